"""What a pasted key pair must look like, per exchange profile."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from types import MappingProxyType

from ..errors import InvalidInputError
from .profiles import KRAKEN, KRAKEN_FUTURES, KRAKEN_SPOT
from .profiles import PROFILES as EXCHANGES

__all__ = ["EXCHANGES", "KRAKEN_SECRET_BYTES", "MAX_SECRET_BYTES", "clean_secret",
           "validate_api_key"]

# The decoded lengths of the secrets Kraken issues (/work/shared/KRAKEN.md, "Keys"): the private
# key is 88 base64 characters. Spot's is padded ("==" at the end): 86 characters of data, 64
# bytes. Futures shows the same 64-byte padded form; the 88 characters of its unpadded form
# (no "=", as in one of Kraken's Futures examples) decode to 66 bytes, so Futures also takes 66.
# Anything else is a cut or extended copy: a 44-character half of a wrapped paste decodes to
# 33 bytes and used to pass the old "at least 32 bytes" rule, to fail at the first signed
# request, after the exchange no longer shows the secret.
KRAKEN_SECRET_BYTES: Mapping[str, tuple[int, ...]] = MappingProxyType({
    KRAKEN_SPOT: (64,), KRAKEN_FUTURES: (64, 66)})
# Half a vault record (fileformat.MAX_RECORD, 64 KiB), so that a secret this long still fits
# beside the longest note and labels; a longer one is refused here, by its size, rather than
# at save time as a record of "impossible length".
MAX_SECRET_BYTES = 32 * 1024
_WHITESPACE = re.compile(r"\s+")
_KEY_CHARS = re.compile(r"[A-Za-z0-9+/=_\-]+")


def check_exchange(exchange: str) -> str:
    if exchange not in EXCHANGES:
        raise InvalidInputError(f"unknown exchange profile {exchange!r}",
                                hint="use one of: " + ", ".join(EXCHANGES))
    return exchange


def clean_secret(exchange: str, raw: str) -> tuple[str, int]:
    """The secret to store and how many whitespace characters were removed from it.

    Kraken secrets are base64 of the length Kraken issues (KRAKEN_SECRET_BYTES). Copying from
    a web page can wrap the line, so whitespace inside is removed (and counted, so the caller
    can warn). A `generic` secret is kept exactly as given. Messages describe the secret's
    shape, never its characters.
    """
    check_exchange(exchange)
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_SECRET_BYTES:
        raise InvalidInputError(f"the secret is {size} bytes; at most {MAX_SECRET_BYTES} "
                                f"({MAX_SECRET_BYTES // 1024} KiB) are stored",
                                hint="was a whole file pasted instead of the secret?")
    if "\0" in raw:
        raise InvalidInputError("the secret holds a NUL byte, which no exchange secret has")
    if exchange not in KRAKEN:
        if not raw or raw.isspace():
            raise InvalidInputError("the secret is empty")
        return raw, 0
    cleaned = _WHITESPACE.sub("", raw)
    removed = len(raw) - len(cleaned)
    if not cleaned:
        raise InvalidInputError("the secret is empty")
    try:
        decoded = base64.b64decode(cleaned.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise InvalidInputError(_not_base64(cleaned),
                                hint="copy the private key again from the exchange's key page"
                                ) from None
    expected = KRAKEN_SECRET_BYTES[exchange]
    if len(decoded) not in expected:
        unpadded = " (66 in Futures' unpadded form)" if 66 in expected else ""
        raise InvalidInputError(
            f"the secret decodes to {len(decoded)} bytes ({len(cleaned)} base64 characters); "
            f"Kraken issues 64-byte secrets{unpadded}, 88 characters",
            hint="copy the whole private key again from the exchange's key page (was it cut "
                 "short, or was something pasted with it?)")
    return cleaned, removed


def _not_base64(cleaned: str) -> str:
    bad = sum(1 for c in cleaned if not (c.isascii() and (c.isalnum() or c in "+/=")))
    if bad:
        return (f"the secret is not valid base64: {bad} character(s) outside A-Z a-z 0-9 + / =")
    if len(cleaned) % 4:
        return (f"the secret is not valid base64: {len(cleaned)} characters is not a multiple "
                "of 4 (a character is missing or extra)")
    return "the secret is not valid base64 (misplaced '=' padding)"


def validate_api_key(exchange: str, api_key: str, *, warn: bool = True) -> str:
    """The api key as stored; `warn=False` for a check ahead of the store, which then says
    it once."""
    check_exchange(exchange)
    key = api_key.strip()
    if not key:
        raise InvalidInputError("the api key is empty")
    if key != api_key and warn:  # a paste artefact: said, never silent; the key itself is kept
        import warnings

        from ..errors import VaultWarning

        removed = len(api_key) - len(key)
        warnings.warn(f"removed {removed} whitespace character{'s' if removed != 1 else ''} "
                      "from the start and end of the api key", VaultWarning, stacklevel=3)
    if exchange in KRAKEN and not _KEY_CHARS.fullmatch(key):
        raise InvalidInputError(
            "the api key has characters a Kraken key never has (spaces or symbols)",
            hint="copy the public key again from the exchange's key page")
    if "\n" in key or "\0" in key:
        raise InvalidInputError("the api key contains a newline or NUL byte")
    return key

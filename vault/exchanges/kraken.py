"""Kraken request signing: Spot `API-Sign`, Futures `Authent` and the Futures websocket challenge.

These are the primitives the agent uses so that a bot never holds the secret. They sign exactly
what they are given: inserting the nonce into the body, choosing the endpoint and checking the
key's scope are the caller's job (`vault.exchanges.endpoints`).

Formulas (docs/kraken.md "Signing"), all keyed with the base64-decoded secret:

- Spot:    base64(HMAC-SHA512(uri_path + SHA256(nonce + post_data)))
- Futures: base64(HMAC-SHA512(SHA256(post_data + nonce + endpoint_path))), where post_data
  is the request's query string followed by its body, each exactly as sent
  (`futures_post_data`: the one rule the gateway, the agent's grant check and the
  integrations share)
- Futures websocket challenge: base64(HMAC-SHA512(SHA256(challenge)))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from ..errors import InvalidInputError
from ..secret import Secret

__all__ = [
    "MAX_SPOT_NONCE",
    "futures_post_data",
    "futures_signed_path",
    "sign_futures",
    "sign_futures_challenge",
    "sign_spot",
    "sign_spot_text",
]

# Kraken Spot nonces are unsigned 64-bit integers.
MAX_SPOT_NONCE = 2**64 - 1

# Futures requests go to /derivatives/api/v3/..., but Kraken signs the path without it.
_FUTURES_PREFIX = "/derivatives"


def sign_spot(secret: str | Secret, uri_path: str, nonce: int, post_data: str) -> str:
    """The `API-Sign` header of a Kraken Spot private request.

    `uri_path` is the path as requested (`/0/private/AddOrder`), `post_data` the body exactly
    as sent, which must itself carry the same `nonce=` value.
    """
    _require_str("uri_path", uri_path)
    digest = hashlib.sha256(
        _utf8("nonce", str(_spot_nonce(nonce))) + _utf8("post_data", post_data)
    ).digest()
    return _hmac_sha512_b64(secret, _utf8("uri_path", uri_path) + digest)


def sign_spot_text(secret: str | Secret, uri_path: str, nonce_text: str, post_data: str) -> str:
    """`sign_spot` over the nonce exactly as a client wrote it (digits, or empty when the
    body has none): what the agent needs to check a signature it did not make."""
    if not (nonce_text == "" or (nonce_text.isascii() and nonce_text.isdigit())):
        raise InvalidInputError("a Kraken Spot nonce is digits")
    digest = hashlib.sha256(nonce_text.encode("ascii") + _utf8("post_data", post_data)).digest()
    return _hmac_sha512_b64(secret, _utf8("uri_path", uri_path) + digest)


def sign_futures(secret: str | Secret, endpoint_path: str, nonce: int | str,
                 post_data: str) -> str:
    """The `Authent` header of a Kraken Futures private REST request.

    `endpoint_path` may be given with or without the `/derivatives` prefix; it is signed without.
    For GET requests `post_data` is the URL-encoded query string exactly as sent; for POST it is
    the URL-encoded body. `nonce` is the value of the `Nonce` header, or `""` when the request
    sends no `Nonce` header (as ccxt does): the header is optional and the formula then simply
    concatenates nothing.
    """
    message = (
        _utf8("post_data", post_data)
        + _futures_nonce(nonce).encode("ascii")
        + _utf8("endpoint_path", futures_signed_path(endpoint_path))
    )
    return _hmac_sha512_b64(secret, hashlib.sha256(message).digest())


def futures_post_data(query: str, body: str) -> str:
    """What a Kraken Futures request signs as `postData`: its URL-encoded query string (without
    the `?`) followed by its body, each byte for byte as sent, with nothing between.

    A GET or DELETE carries only a query, ccxt's POSTs put their parameters in the query and
    send no body, python-kraken-sdk's a body (and signs query + body when it has both; Kraken's
    guide: postData is the URL-encoded data as sent). One rule for every method, so a request
    is never checked over one part and sent with another.
    """
    return query + body


def sign_futures_challenge(secret: str | Secret, challenge: str) -> str:
    """The `signed_challenge` of a Kraken Futures websocket private subscription."""
    digest = hashlib.sha256(_utf8("challenge", challenge)).digest()
    return _hmac_sha512_b64(secret, digest)


def futures_signed_path(endpoint_path: str) -> str:
    """The form of a Futures endpoint path that goes into `Authent`.

    A query string is refused rather than signed: on GET it belongs in `post_data`, and a path
    that carries one would produce a signature Kraken rejects, far from the mistake.
    """
    _require_str("endpoint_path", endpoint_path)
    if not endpoint_path.startswith("/"):
        raise InvalidInputError(
            f"a Kraken Futures endpoint path starts with '/' (got {endpoint_path!r})")
    if "?" in endpoint_path or "#" in endpoint_path:
        raise InvalidInputError(
            "a Kraken Futures endpoint path carries no query string",
            hint="pass the URL-encoded query string as post_data instead",
        )
    if endpoint_path.startswith(_FUTURES_PREFIX + "/"):
        return endpoint_path[len(_FUTURES_PREFIX):]
    return endpoint_path


def _spot_nonce(nonce: int) -> int:
    # bool is an int subclass; True as a nonce is a caller bug, not the nonce 1.
    if isinstance(nonce, bool) or not isinstance(nonce, int):
        raise InvalidInputError("a Kraken Spot nonce is an integer")
    if not 0 <= nonce <= MAX_SPOT_NONCE:
        raise InvalidInputError("a Kraken Spot nonce is an unsigned 64-bit integer")
    return nonce


def _futures_nonce(nonce: int | str) -> str:
    # The nonce also travels in an HTTP header, so anything but digits (CR/LF above all) is refused.
    if isinstance(nonce, bool):
        raise InvalidInputError("a Kraken Futures nonce is digits or empty")
    if isinstance(nonce, int):
        if nonce < 0:
            raise InvalidInputError("a Kraken Futures nonce is not negative")
        return str(nonce)
    if isinstance(nonce, str) and (nonce == "" or (nonce.isascii() and nonce.isdigit())):
        return nonce
    raise InvalidInputError("a Kraken Futures nonce is digits or empty")


def _hmac_sha512_b64(secret: str | Secret, message: bytes) -> str:
    mac = hmac.new(_secret_bytes(secret), message, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode("ascii")


def _secret_bytes(secret: str | Secret) -> bytes:
    """The HMAC key. Error messages name the problem, never the value."""
    text = secret.reveal() if isinstance(secret, Secret) else secret
    if not isinstance(text, str):
        raise InvalidInputError("the API secret must be text")
    try:
        # validate=True: Kraken secrets are plain padded base64, and the default decoder would
        # silently drop stray characters and sign with a different key.
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(
            "the API secret is not valid base64",
            hint="use the private key exactly as Kraken showed it, without spaces or line breaks",
        ) from None
    if not key:
        raise InvalidInputError("the API secret is empty")
    return key


def _require_str(name: str, value: object) -> None:
    # Values arrive from bots through the agent as JSON, so a number or null is possible here.
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be text (got {type(value).__name__})")


def _utf8(name: str, value: str) -> bytes:
    _require_str(name, value)
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates survive JSON decoding but have no UTF-8 form, so no request carries them.
        raise InvalidInputError(f"{name} is not valid Unicode text") from None

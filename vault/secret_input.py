"""A secret from standard input (`--secret-stdin`): all of it, exactly, or nothing.

Standard input has one meaning for a command that reads a secret from it: the whole of it is
the secret. One trailing newline (LF or CRLF, as `echo` and editors add) is removed; any other
line break or a NUL byte means the input is not one secret as pasted (a secret wrapped over
two lines, a passphrase line in front of it), so it is refused rather than cut to fit.
Whitespace inside a Kraken secret is removed later, with a warning, by the exchange check.
"""

from __future__ import annotations

from typing import BinaryIO

from .errors import InvalidInputError

__all__ = ["MAX_STDIN_BYTES", "secret_from_bytes", "secret_from_stream"]

MAX_STDIN_BYTES = 64 * 1024


def secret_from_stream(stream: BinaryIO) -> str:
    """Read all of `stream` (at most MAX_STDIN_BYTES) and return the secret it holds."""
    raw = stream.read(MAX_STDIN_BYTES + 1)
    if len(raw) > MAX_STDIN_BYTES:
        raise InvalidInputError(f"standard input holds more than {MAX_STDIN_BYTES // 1024} KiB; "
                                "a secret is far shorter", hint="pipe in the secret alone")
    return secret_from_bytes(raw)


def secret_from_bytes(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("the secret on standard input is not valid UTF-8") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise InvalidInputError("the secret on standard input is empty",
                                hint="pipe the secret in, e.g. from a file: "
                                     "--secret-stdin < FILE")
    if "\n" in text or "\r" in text:
        lines = text.count("\n") + text.count("\r") - text.count("\r\n") + 1
        raise InvalidInputError(
            f"standard input holds {lines} lines; --secret-stdin takes the secret alone, "
            "on one line", hint="join a wrapped secret into one line; the passphrase never "
            "comes from standard input together with the secret (use --passphrase-file, or "
            "`botvault unlock` first)")
    if "\0" in text:
        raise InvalidInputError("the secret on standard input holds a NUL byte")
    return text

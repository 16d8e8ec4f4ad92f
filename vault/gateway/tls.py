"""The gateway's own TLS: the server context for `--tls-cert`/`--tls-key`.

TLS 1.2 at least (Python's default ciphers for it: forward-secret AEAD suites); the key file
must be private (`botvault.private`), as every other secret file botvault reads.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from ..errors import InvalidInputError
from ..private import check_private_file

__all__ = ["server_context"]


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with `cert` (PEM, chain allowed) and its private `key`."""
    try:
        check_private_file(key, "the gateway's TLS key")
    except FileNotFoundError:
        raise InvalidInputError(f"--tls-key: no file at {key}",
                                hint="make one: botvault gateway tls-init --name HOST") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInputError(
            f"--tls-cert/--tls-key: cannot use {cert} with {key} "
            f"({getattr(exc, 'strerror', None) or type(exc).__name__})",
            hint="give a PEM certificate and the key that belongs to it") from None
    return context

"""How a gateway reaches the etcd cluster it shares keys through (`--etcd` and its options).

Only names and file paths: the password is read from its file when the gateway starts, so it
is never on the command line nor in a repr.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import InvalidInputError

__all__ = ["DEFAULT_LEASE_TTL", "EtcdSettings", "parse_endpoints"]

DEFAULT_LEASE_TTL = 5  # seconds a killed gateway's locks outlive it


def parse_endpoints(text: str) -> tuple[str, ...]:
    """`URL[,URL...]`: http(s)://host:port of each member, no path or credentials."""
    urls = tuple(u.strip().rstrip("/") for u in text.split(",") if u.strip())
    if not urls:
        raise InvalidInputError("--etcd takes URL[,URL...] (got nothing)")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username \
                or parts.password or parts.path or parts.query or parts.fragment:
            raise InvalidInputError(f"--etcd takes member URLs like https://10.0.0.5:2379 "
                                    f"(got {url!r})")
    return urls


@dataclass(frozen=True)
class EtcdSettings:
    endpoints: tuple[str, ...]
    ca_file: Path | None = None
    cert_file: Path | None = None  # a client certificate, when the cluster asks for one
    key_file: Path | None = None
    user: str | None = None
    password_file: Path | None = None
    lease_ttl: int = DEFAULT_LEASE_TTL
    timeout: float = 4.5  # one etcd operation, all members tried; then "not sent"
    prefix: str = "botvault/"

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise InvalidInputError("--etcd-cert and --etcd-key go together")
        if (self.user is None) != (self.password_file is None):
            raise InvalidInputError("--etcd-user and --etcd-password-file go together",
                                    hint="the password is read from a file, never argv")
        if not 2 <= self.lease_ttl <= 300:
            raise InvalidInputError("--etcd-lease-ttl is from 2 to 300 seconds")
        if not 0 < self.timeout <= 60:
            raise InvalidInputError("the etcd timeout is from 0 to 60 seconds")

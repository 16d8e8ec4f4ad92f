"""What a gateway is started with: where it listens, where it forwards, its limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import InvalidInputError
from .etcd_settings import EtcdSettings

__all__ = [
    "DEFAULT_FUTURES_URL",
    "DEFAULT_PORT",
    "DEFAULT_SPOT_URL",
    "TIERS",
    "GatewayConfig",
    "ListenAddress",
    "check_upstream_url",
    "parse_listen",
]

DEFAULT_SPOT_URL = "https://api.kraken.com"
DEFAULT_FUTURES_URL = "https://futures.kraken.com"
DEFAULT_PORT = 8422
TIERS = ("starter", "intermediate", "pro")


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """`HOST:PORT` (or `[V6]:PORT`, or a bare `PORT` on 127.0.0.1). HOST must be an IP
    address: a name could resolve to something other than what the user meant to expose."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InvalidInputError(f"--listen takes an IP address and a port (got {text!r})",
                                hint="e.g. --listen 127.0.0.1:8422") from None
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise InvalidInputError(f"--listen takes a port from 0 to 65535 (got {text!r})")
    return ListenAddress(host, int(port_text))


def check_upstream_url(flag: str, url: str) -> str:
    """An exchange origin: http(s)://host[:port], no path, query or credentials. Plain http
    only to a loopback address (a local test exchange): anything else goes over TLS."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username \
            or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidInputError(f"{flag} takes an origin like https://api.kraken.com "
                                f"(got {url!r})")
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if not loopback:
            raise InvalidInputError(f"{flag} must be https:// (got {url!r})",
                                    hint="plain http is accepted only for a loopback address")
    return url.rstrip("/")


@dataclass(frozen=True)
class GatewayConfig:
    """Every setting of one gateway. Sizes in bytes, times in seconds."""

    listen: ListenAddress = ListenAddress("127.0.0.1", DEFAULT_PORT)
    spot_url: str = DEFAULT_SPOT_URL
    futures_url: str = DEFAULT_FUTURES_URL
    tier: str = "starter"
    ca_file: Path | None = None
    max_wait: float = 30.0
    max_body: int = 256 * 1024
    body_timeout: float = 10.0
    idle_timeout: float = 15.0  # an idle or unfinished connection is closed after this
    upstream_timeout: float = 30.0
    # A grant-signed request is accepted once, while its nonce is within this many seconds
    # of the clock (agent.freshness): wide enough for a bot's signing-to-arrival time and
    # NTP-synced clocks, narrow enough that the agent remembers few requests.
    replay_window: float = 10.0
    max_connections: int = 1024  # open connections in total; more are closed at once
    max_per_grant: int = 256  # requests of one grant in progress at once; more: EService:Busy
    audit_failure: str = "refuse"  # an audit line that cannot be written: refuse | continue
    audit_keep_days: float = 90.0  # forwarded-request lines are kept this long ...
    audit_max_mb: float = 100.0  # ... and within this many MB, whichever is reached first
    allow_remote: bool = False  # kept for old command lines: TLS is what allows it now
    tls_cert: Path | None = None  # the gateway's own certificate and key: it serves HTTPS
    tls_key: Path | None = None
    etcd: EtcdSettings | None = None  # keys shared with other gateways (etcd_coord)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidInputError("--tls-cert and --tls-key go together",
                                    hint="botvault gateway tls-init makes both")
        if self.tier not in TIERS:
            raise InvalidInputError(f"--tier is one of {', '.join(TIERS)} (got {self.tier!r})")
        check_upstream_url("--spot-url", self.spot_url)
        check_upstream_url("--futures-url", self.futures_url)
        if not self.listen.is_loopback and not self.tls:
            # Plain HTTP only on loopback: a grant's requests (orders) and the exchange's
            # answers (balances) would cross the network readable and changeable.
            raise InvalidInputError(
                f"the gateway listens on loopback only without TLS; {self.listen} is not",
                hint="serve HTTPS: botvault gateway tls-init --name HOST, then pass "
                     "--tls-cert and --tls-key (--allow-remote alone no longer does)")
        if not 0 < self.max_wait <= 3600:
            raise InvalidInputError("--max-wait is from 0 to 3600 seconds")
        if not 1 <= self.replay_window <= 300:
            raise InvalidInputError("--replay-window is from 1 to 300 seconds")
        if not 1 <= self.max_connections <= 1_000_000 or \
                not 1 <= self.max_per_grant <= 1_000_000:
            raise InvalidInputError("--max-connections and --max-per-grant are from 1 to "
                                    "1000000")
        if self.audit_failure not in ("refuse", "continue"):
            raise InvalidInputError("--audit-failure is refuse or continue")
        if not (0 < self.audit_keep_days <= 36500 and 0.1 <= self.audit_max_mb <= 1_000_000):
            raise InvalidInputError("--audit-keep-days is from 0 to 36500 and --audit-max-mb "
                                    "from 0.1 to 1000000")

"""One vault entry as an agent-signed client sees it: name, real key, and its request order.

Every agent-signed integration resolves its entry here once, at construction, so a wrong
name, an entry of the wrong exchange for the client, or a retired pair is refused before any
request; and every one of them orders its requests with the same `KeyOrder` that
`AgentClient.request_lock` and the gateway take (keyed by exchange + api key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, NotFoundError
from ..request_lock import DEFAULT_TIMEOUT, KeyOrder

if TYPE_CHECKING:
    from ..agent import AgentClient

__all__ = ["AgentEntry", "resolve"]


@dataclass(frozen=True)
class AgentEntry:
    """What an agent-signed client needs: never the secret."""

    client: AgentClient
    name: str
    exchange: str
    api_key: str
    order: KeyOrder
    order_timeout: float

    def __repr__(self) -> str:
        return f"AgentEntry(name={self.name!r}, exchange={self.exchange!r})"


def resolve(client: AgentClient, name: str, expected: str, client_label: str,
            order_timeout: float = DEFAULT_TIMEOUT) -> AgentEntry:
    """The entry `name` from the agent's listing (no secret), which must be an `expected`
    ("kraken-spot" / "kraken-futures") entry, since `client_label` speaks only that API."""
    if not order_timeout > 0:  # also refuses NaN
        raise InvalidInputError(f"order_timeout must be a positive number of seconds, "
                                f"not {order_timeout!r}")
    listed = next((e for e in client.list() if e.get("name") == name), None)
    if listed is None:
        raise NotFoundError(f"no entry named {name!r}", hint="see the names with: botvault list")
    exchange, api_key = str(listed.get("exchange", "")), str(listed.get("api_key", ""))
    if exchange != expected:
        raise InvalidInputError(
            f"entry {name!r} is a {exchange} key; {client_label} speaks {expected} only",
            hint=_hint(exchange))
    return AgentEntry(client, name, exchange, api_key, client.key_order(name), order_timeout)


def _hint(exchange: str) -> str:
    if exchange == "kraken-spot":
        return "use ccxt.kraken, kraken.spot clients or krakenex for a Spot key"
    if exchange == "kraken-futures":
        return "use ccxt.krakenfutures or kraken.futures clients for a Futures key"
    return "the agent signs Kraken Spot and Futures requests only"

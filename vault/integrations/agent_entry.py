"""One vault entry as an agent-signed client sees it: name, real key, and its request order.

Every agent-signed integration resolves its entry here once, at construction, so a wrong
name, an entry of the wrong exchange for the client, or a retired pair is refused before any
request; and every one of them orders its requests with the same `KeyOrder` that
`AgentClient.request_lock` and the gateway take (keyed by exchange + api key), and paces
them by the same machine-wide rate counter as the gateway (`botvault.rate_limits`): a
request signed here waits, holding the order, until the key's counter takes it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, NotFoundError, VaultError
from ..rate_limits import shared_governor
from ..request_lock import DEFAULT_TIMEOUT, KeyOrder
from ..secret import Secret

if TYPE_CHECKING:
    from ..agent import AgentClient

__all__ = ["AgentEntry", "GrantPair", "resolve"]


@dataclass(frozen=True)
class GrantPair:
    """A grant's Kraken-shaped pair (`botvault grant add`), for a `--sign-only` agent, which
    signs only what a grant authenticates. The secret is a grant's, never the exchange's."""

    api_key: str
    api_secret: Secret = field(repr=False)

    @classmethod
    def of(cls, pair: tuple[str, str | Secret]) -> GrantPair:
        key, secret = pair
        return cls(key, secret if isinstance(secret, Secret) else Secret(secret))


@dataclass(frozen=True)
class AgentEntry:
    """What an agent-signed client needs: never the secret."""

    client: AgentClient
    name: str
    exchange: str
    api_key: str
    order: KeyOrder
    order_timeout: float
    grant: GrantPair | None = None

    @contextlib.contextmanager
    def in_order(self, translate: Callable[[VaultError], Exception]) -> Iterator[None]:
        """Holds the key's order around one whole request (signing, sending, the answer);
        a botvault error, from the hold or the request, leaves as `translate` makes it (the
        client's own exception type)."""
        try:
            with self.order.hold(self.order_timeout):
                yield
        except VaultError as exc:
            raise translate(exc) from exc

    @contextlib.asynccontextmanager
    async def in_order_async(self, translate: Callable[[VaultError], Exception]
                             ) -> AsyncIterator[None]:
        """`in_order` for an async client: the hold waits without blocking its loop."""
        try:
            async with self.order.hold_async(self.order_timeout):
                yield
        except VaultError as exc:
            raise translate(exc) from exc

    def sign(self, path: str, data: str, method: str = "POST") -> Any:
        """The request signed with the real key by the agent: by entry name, or, with a
        grant, authenticated by the grant first (what a `--sign-only` agent requires).
        The answer has `body` and `headers`. Called holding the key's order, right before
        sending; returns once the key's rate counter takes the request (it waits, in this
        thread, as the agent call does: an async client's loop waits with it)."""
        signed: Any
        if self.grant is None:
            signed = self.client.sign(self.name, path, data, method=method)
        else:
            signed = self.client.sign_with_grant(self.grant.api_key, self.grant.api_secret,
                                                 path, data, method)
        self.pace(path, data)
        return signed

    def pace(self, path: str, data: str) -> None:
        """Wait until the key's machine-wide counter takes a request to `path`."""
        governor = shared_governor(self.order.vault_path)
        if governor is None:  # $BOTVAULT_KRAKEN_TIER=off
            return
        while (wait := governor.admit_path(self.exchange, self.order.key_id, path,
                                           data)) > 0:
            time.sleep(wait)

    def __repr__(self) -> str:
        return f"AgentEntry(name={self.name!r}, exchange={self.exchange!r})"


def resolve(client: AgentClient, name: str, expected: str, client_label: str,
            order_timeout: float = DEFAULT_TIMEOUT, grant: GrantPair | None = None
            ) -> AgentEntry:
    """The entry `name` from the agent's listing (no secret), which must be an `expected`
    ("kraken-spot" / "kraken-futures") entry, since `client_label` speaks only that API.

    With `grant`, the entry is the one the grant was issued for (`name` must be it), found
    with `grant_resolve`, and requests are signed through the grant."""
    if not order_timeout > 0:  # also refuses NaN
        raise InvalidInputError(f"order_timeout must be a positive number of seconds, "
                                f"not {order_timeout!r}")
    if grant is not None:
        target = client.grant_resolve(grant.api_key)
        if target.entry != name:
            raise InvalidInputError(f"the grant is for entry {target.entry!r}, not {name!r}",
                                    hint=f"pass {target.entry!r} as the name")
        if target.exchange != expected:
            raise InvalidInputError(
                f"entry {name!r} is a {target.exchange} key; {client_label} speaks "
                f"{expected} only", hint=_hint(target.exchange))
        return AgentEntry(client, name, target.exchange, grant.api_key,
                          client.grant_order(grant.api_key), order_timeout, grant)
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

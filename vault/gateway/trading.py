"""The gateway's part in grant trading policies (the agent enforces them, see
`botvault.trading_gate`): refusing what the agent could not judge whole, the aliases
of the pair names an order uses, and Kraken's ids for the orders placed.

Kraken's public pair lists are fetched through the gateway's upstream and cached, for the
aliases of the pair names an order uses (a grant policy's `pairs` holds each pair under
every name: Spot's pair name, altname and wsname; a Futures symbol in any case).

Public data only: the agent, which enforces the policy, asks for nothing else from the
gateway. A list that cannot be fetched yields no aliases, and the agent then compares
names literally (a name the policy does not list is refused): failing closed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from ..trading_policy.orders import FUNDS_PATHS, ORDER_PATHS, pair_names
from .forwarding import Upstream, UpstreamError
from .grants import GrantAgent
from .kraken_errors import Api

__all__ = ["PairList", "PolicyGuard", "order_ids"]

_TTL_S = 3600.0
_RETRY_S = 30.0  # after a failed fetch
_LIST_LIMIT = 16 << 20  # the asset-pair and instrument lists: a few MiB at most
_PATHS = {Api.SPOT: "/0/public/AssetPairs", Api.FUTURES: "/derivatives/api/v3/instruments"}


def _spot_groups(doc: Any) -> dict[str, list[str]]:
    result = doc.get("result") if isinstance(doc, dict) else None
    groups: dict[str, list[str]] = {}
    for name, info in (result or {}).items():
        if not isinstance(info, dict):
            continue
        names = [n for n in (name, info.get("altname"), info.get("wsname"))
                 if isinstance(n, str) and n]
        for n in names:
            groups[n] = names
    return groups


def _futures_groups(doc: Any) -> dict[str, list[str]]:
    items = doc.get("instruments") if isinstance(doc, dict) else None
    groups: dict[str, list[str]] = {}
    for item in items or []:
        symbol = item.get("symbol") if isinstance(item, dict) else None
        if isinstance(symbol, str) and symbol:
            groups[symbol.casefold()] = [symbol]
    return groups


class PairList:
    """One list per API, refreshed after an hour; concurrent misses share one fetch."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lists: dict[Api, tuple[float, dict[str, list[str]] | None]] = {}
        self._locks = {api: asyncio.Lock() for api in Api}

    async def groups(self, upstream: Upstream, origin: str, api: Api
                     ) -> dict[str, list[str]] | None:
        async with self._locks[api]:
            cached = self._lists.get(api)
            if cached is not None and self._clock() < cached[0]:
                return cached[1]
            try:
                answer = await upstream.send("GET", origin, _PATHS[api], {}, b"")
                body = await answer.read(_LIST_LIMIT)  # streamed: read it whole, bounded
                doc = json.loads(body) if answer.status == 200 else None
                groups = (_spot_groups if api is Api.SPOT else _futures_groups)(doc) or None
            except (UpstreamError, ValueError, AttributeError):
                groups = None
            self._lists[api] = (self._clock() + (_TTL_S if groups else _RETRY_S), groups)
            return groups


def order_ids(api: Api, endpoint: str, body: bytes) -> list[str | None]:
    """Kraken's ids for the orders an answer says were placed, in the request's order
    ([] when it placed none or cannot be read)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    found: list[Any] = []
    if api is Api.SPOT and endpoint.endswith("/AddOrder"):
        txids = (doc.get("result") or {}).get("txid") if not doc.get("error") else None
        found = txids[:1] if isinstance(txids, list) else []
    elif api is Api.SPOT and endpoint.endswith("/EditOrder"):
        txid = (doc.get("result") or {}).get("txid") if not doc.get("error") else None
        found = [txid]
    elif api is Api.SPOT and endpoint.endswith("/AddOrderBatch"):
        orders = (doc.get("result") or {}).get("orders") if not doc.get("error") else None
        found = [o.get("txid") if isinstance(o, dict) else None for o in orders or []]
    elif api is Api.FUTURES and endpoint.endswith("/sendorder"):
        status = doc.get("sendStatus")
        found = [status.get("order_id")] if isinstance(status, dict) else []
    return [i if isinstance(i, str) and 0 < len(i) <= 100 else None for i in found]


class PolicyGuard:
    """The gateway's part in a grant's trading policy (the agent enforces it): refuse what
    the agent cannot see (order parameters in a query string beside a body), and look up
    the aliases of the pair names an order uses."""

    def __init__(self) -> None:
        self.pairs = PairList()
        self._learning: dict[str, asyncio.Task[None]] = {}  # grant key -> ids on their way

    async def before_sign(self, grant_key: str) -> None:
        """Wait until the ids of this grant's last order reached the agent: an edit may
        name that order. Call holding the key's order."""
        learning = self._learning.pop(grant_key, None)
        if learning is not None:
            await learning

    def after_forward(self, agent: GrantAgent, grant_key: str, api: Api, endpoint: str,
                      nonce: int, body: bytes) -> None:
        """Send Kraken's ids for the orders just placed (in the answer's `body`) to the
        agent, off the answer's path (`before_sign` orders it before the grant's next
        request)."""
        ids = order_ids(api, endpoint, body)
        if any(ids):
            self._learning[grant_key] = asyncio.create_task(
                self._learn(agent, grant_key, nonce, ids))

    @staticmethod
    async def _learn(agent: GrantAgent, grant_key: str, nonce: int,
                     ids: list[str | None]) -> None:
        try:
            await agent.learn(grant_key, nonce, ids)
        except Exception as exc:  # best effort: without them an edit of it is refused
            print(f"botvault: warning: the agent did not take the order ids: "
                  f"{type(exc).__name__}", file=sys.stderr)

    async def aliases(self, upstream: Upstream, origin: str, api: Api, exchange: str,
                      endpoint: str, policy: dict[str, Any] | None, text: str,
                      query: str, content_type: str) -> dict[str, list[str]] | None:
        """The aliases to send with the request; ValueError(message) to refuse it."""
        if not policy or (endpoint not in ORDER_PATHS[exchange] and
                          endpoint not in FUNDS_PATHS[exchange]):
            return None
        if query and text != query:
            # The agent judges the body; the exchange could read the query string too.
            raise ValueError("grant policy: parameters in the query string of an order or "
                             "funds request are refused")
        if "pairs" not in policy:
            return None
        names = pair_names(exchange, endpoint, text, content_type)
        if not names:
            return None
        groups = await self.pairs.groups(upstream, origin, api)
        if groups is None:
            return None
        futures = api is Api.FUTURES
        return {n: groups.get(n.casefold() if futures else n, []) for n in names}

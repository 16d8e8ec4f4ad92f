"""The orders a grant placed through this agent, by the ids an edit or amend names them by.

An edit that does not state everything the policy needs (AmendOrder never states the pair;
Futures editorder never states the symbol) is judged against the order it changes, and the
agent knows that order only if it signed it: by the client's id (`cl_ord_id`, `cliOrdId`)
at once, and by Kraken's id (`txid`, `order_id`) once the gateway reports the answer. An id
used for more than one order keeps every order it named (up to a few): an edit is judged
against each. Memory only: after a restart an edit of an older order is refused (the policy
then cannot tell what it changes), which is the safe side.
"""

from __future__ import annotations

from collections import OrderedDict

from .orders import Order

__all__ = ["OrderMemory"]

_MAX_IDS = 20_000  # per grant; the oldest are forgotten first
_MAX_PER_ID = 4


class OrderMemory:
    def __init__(self) -> None:
        self._ids: dict[str, OrderedDict[str, list[Order] | None]] = {}

    def remember(self, grant: str, key: str, order: Order) -> None:
        ids = self._ids.setdefault(grant, OrderedDict())
        orders = ids.pop(key, [])
        if orders is not None and order not in orders:
            orders.append(order)
        # None: named more orders than kept; it is never trusted again (until forgotten).
        ids[key] = orders if orders is not None and len(orders) <= _MAX_PER_ID else None
        while len(ids) > _MAX_IDS:
            ids.popitem(last=False)

    def recall(self, grant: str, key: str) -> list[Order]:
        """Every order `key` named for `grant`; [] when it is not known (or was reused more
        often than remembered: then it cannot be judged)."""
        ids = self._ids.get(grant)
        return list((ids.get(key) if ids is not None else None) or [])

    def link(self, grant: str, client_key: str, order_key: str) -> None:
        """Kraken's id for an order known by the client's id (from the exchange's answer)."""
        for order in self.recall(grant, client_key):
            self.remember(grant, order_key, order)

"""The orders a grant placed through this agent, by the ids an edit or amend names them by.

An edit that does not state everything the policy needs (AmendOrder never states the pair;
Futures editorder never states the symbol) is judged against the order it changes, and the
agent knows that order only if it signed it: by the client's id (`cl_ord_id`, `cliOrdId`)
at once, and by Kraken's id (`txid`, `order_id`) once the gateway reports the answer. Every
id of one order shares one `Remembered`, which an allowed edit updates, so the next edit is
judged against the order as it now is. An id used for more than one order keeps each (up to
a few; beyond that it is never trusted again): an edit is judged against every one. Memory
only: after a restart an edit of an older order is refused (the policy then cannot tell
what it changes), which is the safe side.
"""

from __future__ import annotations

from collections import OrderedDict

from .orders import Order

__all__ = ["OrderMemory", "Remembered"]

_MAX_IDS = 20_000  # per grant; the oldest are forgotten first
_MAX_PER_ID = 4


class Remembered:
    """One order as the agent last allowed it (placed, then edited)."""

    __slots__ = ("order",)

    def __init__(self, order: Order) -> None:
        self.order = order


class OrderMemory:
    def __init__(self) -> None:
        # None: an id that named more orders than kept; never trusted again.
        self._ids: dict[str, OrderedDict[str, list[Remembered] | None]] = {}

    def remember(self, grant: str, key: str, order: Order | Remembered) -> Remembered:
        held = order if isinstance(order, Remembered) else Remembered(order)
        ids = self._ids.setdefault(grant, OrderedDict())
        known = ids.pop(key, [])
        if known is not None and all(h is not held for h in known):
            known.append(held)
        ids[key] = known if known is not None and len(known) <= _MAX_PER_ID else None
        while len(ids) > _MAX_IDS:
            ids.popitem(last=False)
        return held

    def recall(self, grant: str, key: str) -> list[Remembered]:
        """Every order `key` named for `grant`; [] when it is not known (or cannot be)."""
        ids = self._ids.get(grant)
        return list((ids.get(key) if ids is not None else None) or [])

    def link(self, grant: str, known_key: str, new_key: str) -> None:
        """Another id for the orders `known_key` names (Kraken's id, from the answer)."""
        for held in self.recall(grant, known_key):
            self.remember(grant, new_key, held)

"""Kraken's per-key rate counters, modelled so requests wait instead of being rejected.

Both Kraken counters are leaky buckets: Spot's REST counter rises by a call's cost and decays
at a fixed rate up to a maximum (15/20/20, decaying 0.33/0.5/1 per second for the
starter/intermediate/pro tiers; ledger and trade-history calls cost 2, AddOrder and
CancelOrder are outside it), Futures' budget is 500 cost units per 10 s (decay 50 per second)
at per-endpoint costs.

The gateway asks `Governor.admit` holding the key's request order, after the agent has
authenticated the request and right before sending it: a request that would take the counter
over waits (still holding the order, so later arrivals queue behind it: first come, first
served), and is counted when it goes. Only requests that are really sent are counted, so a
flood of badly signed requests costs no other bot any of its key's budget. Each send is
counted a moment (`SLACK` seconds of decay) early, which covers how much later than the
gateway's clock says the request may reach the exchange's counter.

Pure arithmetic on an injectable clock: nothing here sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .kraken_errors import Api

__all__ = [
    "FUTURES_BUDGET",
    "FUTURES_COSTS",
    "SLACK",
    "SPOT_TIERS",
    "Bucket",
    "Governor",
    "futures_cost",
    "spot_cost",
]

SPOT_TIERS: dict[str, tuple[float, float]] = {
    "starter": (15.0, 0.33), "intermediate": (20.0, 0.5), "pro": (20.0, 1.0)}
_SPOT_COST_2 = frozenset({"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"})
_SPOT_UNCOUNTED = frozenset({"AddOrder", "CancelOrder"})

FUTURES_BUDGET, FUTURES_DECAY = 500.0, 50.0  # 500 units per 10 s
# Kraken Futures' documented costs per endpoint (REST "API limits"); unlisted ones cost 1.
FUTURES_COSTS: dict[str, int] = {
    "sendorder": 10, "editorder": 10, "cancelorder": 10, "batchorder": 9,
    "cancelallorders": 25, "cancelallordersafter": 25, "accounts": 2, "openpositions": 2,
    "openorders": 2, "fills": 2, "recentorders": 2, "orders/status": 1, "transfer": 10,
    "transfer/subaccount": 10, "withdrawal": 100, "leveragepreferences": 2,
    "pnlpreferences": 2, "unwindqueue": 2, "notifications": 2, "subaccounts": 2,
}


def spot_cost(endpoint: str) -> int:
    """The Spot REST counter cost of `/0/private/<name>` (0: outside the counter)."""
    name = endpoint.removeprefix("/0/private/")
    if name in _SPOT_UNCOUNTED:
        return 0
    return 2 if name in _SPOT_COST_2 else 1


def futures_cost(endpoint: str) -> int:
    """The Futures cost of a normalised endpoint (`/api/v3/sendorder`)."""
    return FUTURES_COSTS.get(endpoint.removeprefix("/api/v3/"), 1)


# Seconds of decay held back at every send: the variation in how long a request takes from
# the gateway's check to the exchange's counter (loopback and a local agent: well below).
SLACK = 0.05


@dataclass
class Bucket:
    """One key's counter: `level` as of time `at`, counted when requests were sent."""

    maximum: float
    decay: float
    level: float = 0.0
    at: float = float("-inf")

    def admit(self, cost: float, now: float) -> float:
        """Seconds to wait before sending now (0: send), by the counter of real sends."""
        if cost <= 0:
            return 0.0
        level = max(0.0, self.level - (now - self.at) * self.decay)
        excess = level + cost - (self.maximum - SLACK * self.decay)
        # Below a nanosecond's worth is rounding: waiting it would not move a float clock.
        return excess / self.decay if excess > 1e-9 else 0.0

    def record(self, cost: float, now: float) -> None:
        """Count a request sent at `now` (after `admit` said 0)."""
        if cost > 0:
            level = max(0.0, self.level - (now - self.at) * self.decay)
            self.level, self.at = level + cost, now


class Governor:
    """The buckets of every key the gateway has seen, by key id; thread-safe."""

    def __init__(self, tier: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.spot_maximum, self.spot_decay = SPOT_TIERS[tier]
        self.clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, api: Api, key_id: str, endpoint: str) -> tuple[Bucket, int]:
        if api is Api.SPOT:
            cost, maximum, decay = spot_cost(endpoint), self.spot_maximum, self.spot_decay
        else:
            cost, maximum, decay = futures_cost(endpoint), FUTURES_BUDGET, FUTURES_DECAY
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = Bucket(maximum, decay)
        return bucket, cost

    def admit(self, api: Api, key_id: str, endpoint: str) -> float:
        """Holding the key's order: seconds to wait before sending; 0 counts the send."""
        with self._lock:
            bucket, cost = self._bucket(api, key_id, endpoint)
            now = self.clock()
            wait = bucket.admit(cost, now)
            if wait == 0:
                bucket.record(cost, now)
            return wait

"""The gateway's rate governor: Kraken's per-key counters, counted when requests are sent.

The model and the state shared with every other process that signs for a key on this
machine live in `botvault.rate_limits` (the in-process integrations use the same); this
module names them for the gateway.
"""

from __future__ import annotations

from ..rate_limits import (
    FUTURES_BUDGET,
    FUTURES_COSTS,
    SLACK,
    SPOT_TIERS,
    Bucket,
    FileRateState,
    Governor,
    MemoryRateState,
    RateState,
    futures_cost,
    spot_cost,
)

__all__ = [
    "FUTURES_BUDGET",
    "FUTURES_COSTS",
    "SLACK",
    "SPOT_TIERS",
    "Bucket",
    "FileRateState",
    "Governor",
    "MemoryRateState",
    "RateState",
    "futures_cost",
    "spot_cost",
]

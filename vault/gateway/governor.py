"""The gateway's rate governor: Kraken's per-key counters, counted when requests are sent.

The model and the state shared with every other process that signs for a key on this
machine live in `botvault.rate_limits` (the in-process integrations use the same); import
them from there. This module only keeps the two names `gateway.app` still imports here.
"""

from __future__ import annotations

from ..rate_limits import FileRateState, Governor

__all__ = ["FileRateState", "Governor"]

"""Trading policies on grants: what a bot may trade (pairs, order types, sizes, a daily
notional budget, reduce-only) and where it may move funds, checked by the agent before it
signs. See `model` (the policy), `orders` (reading a request), `check` (the rules),
`memory` (the orders a grant placed); the durable daily budget is `botvault.trading_budget`,
the agent's one call `botvault.trading_gate`."""

from __future__ import annotations

from .model import Policy, parse_policy
from .refused import RULES, Refused

__all__ = ["RULES", "Policy", "Refused", "parse_policy"]

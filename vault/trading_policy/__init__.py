"""Trading policies on grants: what a bot may trade (pairs, order types, sizes, a daily
notional budget, reduce-only) and where it may move funds, checked by the agent before it
signs. See `model` (the policy), `orders` (reading a request), `check` (the rules),
`budget` (the durable daily budget), `gate` (the agent's one call)."""

from __future__ import annotations

from .model import Policy, parse_policy
from .refused import RULES, Refused

__all__ = ["RULES", "Policy", "Refused", "parse_policy"]

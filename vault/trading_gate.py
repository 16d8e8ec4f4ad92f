"""Where the agent enforces a grant's policy: one call before it signs (`PolicyGate.enforce`).

The agent is the trust anchor: it verifies the bot's signature over the exact body, so the
body it judges here is the body the exchange will read, and a compromised gateway (which
holds no secret) cannot change it or skip this check. The daily budget is kept by the agent
for the same reason. The gateway only contributes public data: the aliases of the pair
names a request uses, from Kraken's public AssetPairs / instruments list. Without them the
agent compares names literally (a name the policy does not list is refused).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import PolicyError
from .exchanges import endpoints
from .trading_budget import DailyBudget
from .trading_policy.check import Aliases, judge
from .trading_policy.memory import OrderMemory, Remembered
from .trading_policy.model import Policy
from .trading_policy.orders import FUNDS_PATHS, ORDER_PATHS, Order, read_request
from .trading_policy.refused import Refused

__all__ = ["PolicyGate", "aliases_from_wire"]

# Endpoints a policy cannot see into, refused to a grant whose policy guards orders or funds:
# a websocket token carries the key's whole power to a channel the agent never sees (order
# entry included), and the assignment program opens positions Kraken chooses.
_OPAQUE = {"kraken-spot": frozenset({"/0/private/GetWebSocketsToken"}),
           "kraken-futures": frozenset({"/api/v3/assignmentprogram/add"})}
_MAX_ALIAS_NAMES = 64
_MAX_ORDERS = 50


def aliases_from_wire(value: object) -> Aliases | None:
    """The `aliases` a gateway sent with a request, or None (absent or malformed)."""
    if not isinstance(value, Mapping) or len(value) > _MAX_ALIAS_NAMES:
        return None
    out: dict[str, Sequence[str]] = {}
    for name, group in value.items():
        if not isinstance(name, str) or not isinstance(group, list) or \
                len(group) > _MAX_ALIAS_NAMES or not all(isinstance(g, str) for g in group):
            return None
        out[name] = tuple(group)
    return out


class PolicyGate:
    """The policy check, the daily budget and the order memory of one agent."""

    def __init__(self, vault_path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.budget = DailyBudget(vault_path, clock=clock)
        self.memory = OrderMemory()

    def enforce(self, bot: str, policy: Policy, exchange: str, path: str, method: str,
                body: str, content_type: str, aliases: Aliases | None
                ) -> list[Order | Remembered]:
        """The orders the request places if it stays inside `policy` (its notional charged
        to the day's budget), else PolicyError naming the rule. A grant without a policy
        returns at once."""
        if policy.empty:
            return []
        try:
            return self._enforce(bot, policy, exchange, path, method, body, content_type,
                                 aliases)
        except Refused as refused:
            raise PolicyError(refused.rule, f"grant policy: {refused.message}",
                              hint="the grant's policy (botvault grant show) does not allow "
                                   "this request") from None

    def _enforce(self, bot: str, policy: Policy, exchange: str, path: str, method: str,
                 body: str, content_type: str, aliases: Aliases | None
                 ) -> list[Order | Remembered]:
        normalised = endpoints.normalise_path(exchange, path)
        if not endpoints.requirement(exchange, path, method).known:
            raise Refused("endpoint", "an endpoint botvault does not know is refused to a "
                          "grant with a policy")
        if normalised in _OPAQUE[exchange] and (policy.guards_orders or policy.guards_funds):
            raise Refused("endpoint", f"{normalised} is out of the policy's sight")
        if normalised not in ORDER_PATHS[exchange] and normalised not in FUNDS_PATHS[exchange]:
            return []
        orders, funds = read_request(exchange, normalised, body, content_type)
        verdict = judge(policy, exchange, orders, funds, aliases,
                        lambda ref: self.memory.recall(bot, ref))
        if policy.max_daily_notional is not None and verdict.charge > 0:
            self.budget.charge(bot, verdict.charge, policy.max_daily_notional)
        for held, now in verdict.updates:  # the next edit is judged against the order as is
            held.order = now
        placed: list[Order | Remembered] = []
        for order in orders:
            if order.ref is None:
                held = Remembered(order)
                placed.append(held)
                if order.client_id is not None:
                    self.memory.remember(bot, "client:" + order.client_id, held)
        if normalised.endswith("/EditOrder") and len(verdict.updates) == 1:
            # EditOrder gives the order a new txid: the answer's id names the same order.
            placed.append(verdict.updates[0][0])
        return placed

    def signed(self, bot: str, nonce: int, placed: list[Order | Remembered]) -> None:
        """Remember the orders a signed request places under its nonce, until the gateway
        reports Kraken's ids for them (`learn`)."""
        for index, order in enumerate(placed):
            self.memory.remember(bot, f"nonce:{nonce}:{index}", order)

    def learn(self, bot: str, nonce: int, order_ids: list[str | None]) -> None:
        """Kraken's ids for the orders the request signed with `nonce` placed, in order
        (from the exchange's answer, which the gateway reads)."""
        for index, order_id in enumerate(order_ids[:_MAX_ORDERS]):
            if order_id:
                self.memory.link(bot, f"nonce:{nonce}:{index}", "order:" + order_id)


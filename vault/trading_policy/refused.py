"""A policy refusal: the rule that refused, and a message that names the numbers."""

from __future__ import annotations

__all__ = ["RULES", "Refused"]

# Every rule a refusal can name (the audit line records `policy:<rule>`).
RULES = frozenset({
    "unreadable", "endpoint", "pair", "unknown-pair", "order-type", "order-volume",
    "order-notional", "unbounded-price", "daily-notional", "reduce-only", "edit-unknown-order",
    "withdraw-key", "withdraw-amount"})


class Refused(Exception):
    """The policy refuses this request; `rule` names the rule, `message` says why."""

    def __init__(self, rule: str, message: str) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}")
        super().__init__(message)
        self.rule = rule
        self.message = message

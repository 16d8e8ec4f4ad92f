"""The two axes of Kraken's API-key form, and how they order.

General API: none < read-only < full (full = every endpoint except withdrawals).
Withdrawal API: none < full. Every entry carries both axes.
"""

from __future__ import annotations

import enum

from .errors import InvalidInputError

__all__ = ["General", "Withdrawal", "parse_general", "parse_withdrawal"]


class General(str, enum.Enum):
    """The "General API" setting of a key."""

    NONE = "none"
    READ_ONLY = "read-only"
    FULL = "full"

    @property
    def rank(self) -> int:
        return _GENERAL_RANK[self]

    def allows(self, needed: General) -> bool:
        """True when a key with this scope may be used where `needed` is required."""
        return self.rank >= needed.rank


class Withdrawal(str, enum.Enum):
    """The "Withdrawal API" setting of a key."""

    NONE = "none"
    FULL = "full"


_GENERAL_RANK = {General.NONE: 0, General.READ_ONLY: 1, General.FULL: 2}


def parse_general(value: str) -> General:
    try:
        return General(value)
    except ValueError:
        raise InvalidInputError(
            f"general scope must be one of none, read-only, full (got {value!r})",
            hint="use what the exchange's key form says under \"General API\"",
        ) from None


def parse_withdrawal(value: str) -> Withdrawal:
    try:
        return Withdrawal(value)
    except ValueError:
        raise InvalidInputError(
            f"withdrawal scope must be one of none, full (got {value!r})",
            hint="use what the exchange's key form says under \"Withdrawal API\"",
        ) from None

"""The two axes of Kraken's API-key form, and how they order.

General API: none < read-only < full (full = every endpoint except withdrawals).
Withdrawal API: none < full. Every entry carries both axes.
"""

from __future__ import annotations

import enum
from typing import TypeVar

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


_Axis = TypeVar("_Axis", General, Withdrawal)
_GENERAL_RANK = {General.NONE: 0, General.READ_ONLY: 1, General.FULL: 2}


def parse_general(value: str) -> General:
    return _parse(General, value, "general", "General API")


def parse_withdrawal(value: str) -> Withdrawal:
    return _parse(Withdrawal, value, "withdrawal", "Withdrawal API")


def _parse(axis: type[_Axis], value: str, label: str, form_label: str) -> _Axis:
    try:
        return axis(value)
    except ValueError:
        choices = ", ".join(member.value for member in axis)
        raise InvalidInputError(
            f"{label} scope must be one of {choices} (got {value!r})",
            hint=f"use what the exchange's key form says under \"{form_label}\"",
        ) from None

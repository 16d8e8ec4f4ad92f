"""Numbers in an order exactly as Kraken reads them, or refused.

Kraken's REST fields (volume, price, size, amount) are decimal strings. Only plain ASCII
decimals are taken: digits, at most one point with digits on both sides, no sign, no
exponent, no hex, no whitespace, no unicode digits, no NaN or infinity; at most 40
characters. A string that some parser could read as another number (`1e3`, `0x10`, an
Arabic-Indic `10`)
is refused rather than read one way here and another way at the exchange. Leading zeros
are taken (`007` is 7 to every decimal reader; none reads it as more).

Spot prices may also be relative (Kraken's AddOrder/AmendOrder: a `+`, `-` or `#` prefix
is an offset from the market price, a `%` suffix makes it a percentage of it). Such a price
is `Relative`: its effective value cannot be bounded without the market, so any rule that
needs the price refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["MAX_DIGITS", "BadNumber", "Relative", "parse_amount", "parse_price", "shown"]

MAX_DIGITS = 40
_PLAIN = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_RELATIVE = re.compile(r"([+#-])?([0-9]+(?:\.[0-9]+)?)(%)?")


class BadNumber(ValueError):
    """A field that is not a number Kraken and botvault would read alike."""


@dataclass(frozen=True)
class Relative:
    """A relative Spot price (`+5`, `-2%`, `#1.5`): an offset from the market."""

    text: str


def _text(value: object, field: str) -> str:
    # JSON bodies carry numbers as the raw text the decoder saw (see `params`); a bool is
    # never a number here (JSON `true` would be 1 to some readers).
    if isinstance(value, bool) or not isinstance(value, str):
        raise BadNumber(f"{field} is not a decimal number")
    if len(value) > MAX_DIGITS:
        raise BadNumber(f"{field} has more than {MAX_DIGITS} characters")
    return value


def parse_amount(value: object, field: str) -> Decimal:
    """A plain non-negative decimal (volume, size, amount, an absolute price)."""
    text = _text(value, field)
    if not _PLAIN.fullmatch(text):  # re's [0-9] is ASCII only: no unicode digits
        raise BadNumber(f"{field} {text!r} is not a plain decimal number")
    return Decimal(text)


def parse_price(value: object, field: str) -> Decimal | Relative:
    """A Spot price: plain, or relative (`+`/`-`/`#` prefix, `%` suffix)."""
    text = _text(value, field)
    match = _RELATIVE.fullmatch(text)
    if match is None:
        raise BadNumber(f"{field} {text!r} is not a price Kraken reads one way")
    if match.group(1) or match.group(3):
        return Relative(text)
    return Decimal(text)


def shown(value: Decimal) -> str:
    """A decimal for a message: plain digits, no exponent, no trailing zeros (`20`, `0.5`)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text

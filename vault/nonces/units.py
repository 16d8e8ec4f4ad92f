"""Nonce units and the checks on what callers pass in: units, counts, counter ids."""

from __future__ import annotations

from ..errors import InvalidInputError

UNITS = ("ms", "us", "10ns")
NS_PER_UNIT = {"ms": 1_000_000, "us": 1_000, "10ns": 10}
MAX_COUNT = 1_000_000  # one call may not push a ms counter more than ~17 minutes ahead


def unit_ns(unit: str) -> int:
    ns = NS_PER_UNIT.get(unit) if isinstance(unit, str) else None
    if ns is None:
        raise InvalidInputError(f"nonce unit must be one of {', '.join(UNITS)} (got {unit!r})",
                                hint="ccxt and krakenex use ms, python-kraken-sdk uses 10ns")
    return ns


def check_count(count: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        raise InvalidInputError(f"nonce count must be an integer from 1 to {MAX_COUNT} "
                                f"(got {count!r})")


def check_counter_id(counter_id: str) -> None:
    ok = isinstance(counter_id, str) and 1 <= len(counter_id) <= 128 and all(
        "!" <= c <= "~" for c in counter_id)
    if not ok:
        raise InvalidInputError("a nonce counter id is 1 to 128 printable ASCII characters "
                                "without spaces")


def duration(seconds: float) -> str:
    """`seconds` in words for messages: about N years, days, hours or minutes, else N.N s."""
    for size, name in ((365.25 * 86400, "years"), (86400, "days"), (3600, "hours"),
                       (60, "minutes")):
        if abs(seconds) >= 2 * size:
            return f"about {seconds / size:.0f} {name}"
    return f"{seconds:.1f} s"

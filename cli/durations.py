"""Durations on the command line: 90s, 15m, 8h, 1d, or combinations like 1h30m."""

from __future__ import annotations

import re

from botvault.errors import InvalidInputError

__all__ = ["format_duration", "format_moment", "parse_duration"]

_PART = re.compile(r"(\d+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    parts = _PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise InvalidInputError(f"invalid duration {text!r}",
                                hint="use e.g. 90s, 15m, 8h, 1d or 1h30m")
    seconds = sum(int(n) * _SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise InvalidInputError("a duration must be positive")
    return float(seconds)


def format_duration(seconds: float) -> str:
    s = max(0, int(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_moment(epoch: float, now: float | None = None) -> str:
    """A local time as people read it: `04:34` today, `2026-12-09 04:34` on another day."""
    import time

    at = time.localtime(epoch)
    today = time.localtime(time.time() if now is None else now)
    if (at.tm_year, at.tm_yday) == (today.tm_year, today.tm_yday):
        return time.strftime("%H:%M", at)
    return time.strftime("%Y-%m-%d %H:%M", at)

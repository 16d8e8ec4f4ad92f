"""A deadline on one await without the extra task `asyncio.wait_for` makes (on Python 3.11+,
`asyncio.timeout`): the gateway bounds two awaits per request, and each task is a few more
turns of the event loop on the request's path (measured with bench/bench_gateway.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["bounded"]

T = TypeVar("T")


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """`await awaitable`, raising asyncio.TimeoutError after `seconds`."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10

"""Deadlines on the gateway's awaits, as cheap as each can be.

`bounded`: a deadline on one await without the extra task `asyncio.wait_for` makes (on
Python 3.11+, `asyncio.timeout`). `cut_after`: for a read on a connection of our own (the
agent's socket, the exchange's), one timer that aborts the connection when it fires, instead
of asyncio.timeout's object, task lookup and reschedule in Python on every request (the
gateway added 1.2x its p50 with `bounded` there: bench/bench_floor.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["bounded", "cut_after"]

T = TypeVar("T")


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """`await awaitable`, raising asyncio.TimeoutError after `seconds`."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10


async def cut_after(reading: Awaitable[T], seconds: float, transport: asyncio.WriteTransport
                    ) -> T:
    """`await reading` (a read on `transport`'s connection); past `seconds` the connection
    is aborted, which ends the read, and TimeoutError is raised: the connection is then
    unusable, as it would be after any timed-out read of a request/answer protocol."""
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        transport.abort()

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        result = await reading
    except (OSError, asyncio.IncompleteReadError):
        if expired:
            raise asyncio.TimeoutError from None  # TimeoutError itself from Python 3.11
        raise
    finally:
        timer.cancel()
    if expired:  # a read that ends quietly at the end of input (readline) ended by the cut
        raise asyncio.TimeoutError
    return result

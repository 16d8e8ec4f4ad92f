"""The gateway's event loop: uvloop when it is installed (the `speedups` extra), else asyncio's.

uvloop runs the same asyncio code (aiohttp's server, streams, subprocesses, signal handlers)
with its loop, transports and socket calls in C; on the gateway's request path that was
about a third of its CPU per request (bench/bench_floor.py). Nothing else changes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

T = TypeVar("T")

# BOTVAULT_GATEWAY_LOOP=asyncio keeps asyncio's own loop (to compare, or to rule uvloop out).
_CHOICE_VAR = "BOTVAULT_GATEWAY_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default."""
    if os.environ.get(_CHOICE_VAR) == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `loop_factory` picks."""
    factory = loop_factory()
    if factory is None:
        return asyncio.run(main)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    loop = factory()  # pragma: no cover - Python 3.10
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        asyncio.set_event_loop(None)
        loop.close()

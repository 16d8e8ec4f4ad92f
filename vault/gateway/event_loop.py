"""The gateway's event loop: asyncio's, or uvloop when asked for (`BOTVAULT_GATEWAY_LOOP=uvloop`,
with the `speedups` extra installed).

uvloop runs the same asyncio code with its loop, transports and socket calls in C: the
gateway's added p50 and CPU per request were about 1.2x without it (bench/bench_floor.py,
`--compare-env`). It is not the default: under uvloop the audit child was found holding the
gateway's listening socket (tests/test_gateway_listening.py), which a restart under systemd
must not leave behind; asyncio's subprocesses close it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

T = TypeVar("T")

# BOTVAULT_GATEWAY_LOOP=uvloop runs the gateway on uvloop (when installed).
_CHOICE_VAR = "BOTVAULT_GATEWAY_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor when asked for and installed, or None for asyncio's."""
    if os.environ.get(_CHOICE_VAR) != "uvloop":
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

"""The gateway's event loop: uvloop's when it is installed (a dependency on Linux and macOS),
asyncio's otherwise or when asked for (`BOTVAULT_GATEWAY_LOOP=asyncio`).

uvloop runs the same asyncio code with its loop, transports and socket calls in C: without
it the gateway's CPU per request was 1.14x and its added p50 1.04x (bench/bench_floor.py
with `--compare-env BOTVAULT_GATEWAY_LOOP=asyncio`, one run). asyncio's loop stays one
variable away, and the tests run the gateway on both (tests/test_gateway_speedups.py).

uvloop's subprocesses keep every descriptor not marked close-on-exec, and it dup()s the
listening socket without that mark: the audit child is started by `subprocess.Popen` with
`close_fds` for that reason (audit_writer), so it never holds the gateway's port.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

T = TypeVar("T")

# BOTVAULT_GATEWAY_LOOP=asyncio runs the gateway on asyncio's own loop.
_CHOICE_VAR = "BOTVAULT_GATEWAY_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor when installed and not declined, or None for asyncio's."""
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

"""JSON for the processes that live long: orjson when installed, the stdlib's meaning always.

orjson (the `speedups` extra) reads and writes JSON several times faster than the stdlib; the
agent's frames (`agent.protocol`) and the gateway's audit records go through here. It is
switched on by `use_orjson()` in the processes that live long (the agent, the gateway, a
client after a few calls), so a short command such as `run` does not pay its import.

What is written or read means exactly what the stdlib would make of it: orjson writes UTF-8
(every reader here decodes UTF-8), and wherever orjson would differ (it refuses lone
surrogates and integers beyond 64 bits, writes `null` for NaN and infinities, reads an
integer beyond 64 bits as a float, refuses NaN and numbers beyond a double) the stdlib does
that message (`tests/test_agent_json.py` holds both ways to it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import ModuleType
from typing import Any

__all__ = ["dumps", "loads", "use_orjson"]

_orjson: ModuleType | None = None


def use_orjson() -> bool:
    """Read and write with orjson from now on, if it is installed; True if so."""
    global _orjson  # noqa: PLW0603 - one switch for the process
    try:
        import orjson
    except ImportError:
        return False
    _orjson = orjson
    return True


def _floats(value: object) -> bool:
    """True when `value` holds a float anywhere (rare: the messages here carry whole
    numbers and text, but for a time or two)."""
    items = value.values() if type(value) is dict else value
    for item in items:  # type: ignore[attr-defined]
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _floats(item)):
            return True
    return False


def dumps(message: Mapping[str, Any]) -> bytes:
    """`message` as compact JSON (UTF-8 from orjson, ASCII from the stdlib)."""
    if _orjson is not None:
        try:
            out: bytes = _orjson.dumps(message)
        except TypeError:  # orjson.JSONEncodeError: a lone surrogate, an int beyond 64 bits
            pass
        else:
            if b"null" not in out or not _floats(message):  # NaN / inf would read as null
                return out
    # ensure_ascii: any str, even a lone surrogate, survives the round trip.
    return json.dumps(message, separators=(",", ":")).encode("ascii")


def loads(payload: bytes) -> Any:
    """What the stdlib reads in `payload` (UnicodeDecodeError or ValueError when it is not
    UTF-8 JSON; RecursionError when it nests too deep)."""
    if _orjson is not None:
        try:
            value = _orjson.loads(payload)
        except ValueError:  # orjson.JSONDecodeError: the stdlib decides (NaN, surrogates)
            pass
        else:
            if type(value) is not dict or not _floats(value):  # no int read as a float
                return value
    return json.loads(payload.decode("utf-8"))

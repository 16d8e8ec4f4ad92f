"""Agent frames mean the same whether orjson (an optional speedup) is installed or not.

orjson writes UTF-8 where the stdlib escapes to ASCII, writes `null` for NaN, reads integers
beyond 64 bits as floats and refuses lone surrogates; `fast_json.dumps` / `loads` hand
those cases to the stdlib. Each property compares what a frame decodes to, both ways round
(a writer with orjson and a reader without, and the reverse), as text of the stdlib, so an
int turned float or a NaN turned null would show.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botvault import fast_json
from botvault.agent.protocol import MAX_ANSWER, ProtocolError, decode_payload, encode_frame

pytest.importorskip("orjson")
fast_json.use_orjson()  # as the agent and the gateway do at start

_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63)
            | st.floats() | st.text())
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=16)
_MESSAGES = st.dictionaries(st.text(max_size=8), _VALUES, max_size=6)


@contextlib.contextmanager
def _stdlib_only() -> Iterator[None]:
    saved = getattr(fast_json, "_orjson")  # noqa: B009 - private, and mypy checks exports
    setattr(fast_json, "_orjson", None)  # noqa: B010
    try:
        yield
    finally:
        setattr(fast_json, "_orjson", saved)  # noqa: B010


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=False)


@given(_MESSAGES)
def test_orjson_frames_mean_what_the_stdlib_frames_mean(message: dict[str, Any]) -> None:
    fast = encode_frame(message, MAX_ANSWER)
    with _stdlib_only():
        slow = encode_frame(message, MAX_ANSWER)
        read_slow = [decode_payload(frame[4:]) for frame in (fast, slow)]
    read_fast = [decode_payload(frame[4:]) for frame in (fast, slow)]
    expected = _text(message)
    assert [_text(v) for v in read_slow + read_fast] == [expected] * 4


@pytest.mark.parametrize("payload", [
    b'{"n":123456789012345678901234567890}',  # orjson alone would read a float
    b'{"t":1e400}',  # orjson refuses it; the stdlib reads inf
    b'{"s":"\\ud800"}',  # a lone surrogate
    b'{"x":NaN}',
    b'{"a":[{"b":2.5}]}',
])
def test_what_orjson_reads_otherwise_is_read_by_the_stdlib(payload: bytes) -> None:
    assert _text(decode_payload(payload)) == _text(json.loads(payload))


@pytest.mark.parametrize("payload", [b'{"a":1', b"[1]", b"\xff{}", b"[" * 100_000])
def test_malformed_frames_are_refused_either_way(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_payload(payload)
    with _stdlib_only(), pytest.raises(ProtocolError):
        decode_payload(payload)


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_send_frame_delivers_every_byte_however_full_the_socket_is(
        timeout: float | None) -> None:
    import socket
    import threading

    from botvault.agent.protocol import FrameReader, send_frame

    left, right = socket.socketpair()
    with left, right:
        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        left.settimeout(timeout)
        message = {"op": "x", "data": "y" * 300_000}  # far beyond the socket's buffer
        got: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: got.append(
            FrameReader(right, wait=10, frame_timeout=10, limit=MAX_ANSWER).read()))
        reader.start()
        send_frame(left, encode_frame(message, MAX_ANSWER))
        reader.join(10)
        assert got == [message]
        right.close()
        with pytest.raises(BrokenPipeError):
            send_frame(left, encode_frame({"op": "x"}))

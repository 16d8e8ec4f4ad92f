"""The gateway's link to the agent (agent_link.AgentLink, an asyncio protocol since issue 22)
against a scripted agent on a real unix socket: answers in pieces, an agent that closes
before, during or instead of answering, one that answers too much or too late, a call
cancelled midway. Each connection's script is the next in the list."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from botvault.agent.protocol import MAX_FRAME, AgentError
from botvault.errors import BusyError, LockedError
from botvault.fast_json import dumps
from botvault.gateway.agent_link import AgentLink

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
_HEADER = struct.Struct(">I")


def _frame(message: dict[str, object]) -> bytes:
    payload = dumps(message)
    return _HEADER.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> dict[str, object]:
    (size,) = _HEADER.unpack(await reader.readexactly(4))
    value: dict[str, object] = json.loads(await reader.readexactly(size))
    return value


async def _echo_op(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A well-behaved agent: each request answered with its op, until the link closes."""
    while True:
        try:
            request = await _read_frame(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(_frame({"ok": True, "op": request["op"]}))
        await writer.drain()


async def _run(tmp_path: Path, scripts: list[Script],
               body: Callable[[AgentLink, list[int]], Awaitable[None]],
               timeout: float = 5.0) -> list[int]:
    """Serve `scripts` (one per connection, in order) and run `body`; the connections
    opened, by index."""
    directory = tmp_path / "sock"
    directory.mkdir(mode=0o700)
    path = directory / "agent.sock"
    opened: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(opened)
        opened.append(index)
        try:
            await scripts[index](reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_unix_server(serve, path=str(path))
    os.chmod(path, 0o600)
    link = AgentLink(path, timeout=timeout)
    try:
        await body(link, opened)
    finally:
        link.close()
        server.close()
        await server.wait_closed()
    return opened


def test_an_answer_arriving_in_pieces_is_put_together(tmp_path: Path) -> None:
    async def pieces(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_frame(reader)
        frame = _frame({"ok": True, "value": "x" * 3000})
        for part in (frame[:2], frame[2:7], frame[7:100], frame[100:]):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.01)
        await _echo_op(reader, writer)

    async def body(link: AgentLink, _opened: list[int]) -> None:
        answer = await link.call("status")
        assert answer["value"] == "x" * 3000
        assert (await link.call("list"))["op"] == "list"  # the same connection, in step

    assert asyncio.run(_run(tmp_path, [pieces], body)) == [0]


def test_an_agent_that_closed_before_answering_is_asked_again_once(tmp_path: Path) -> None:
    async def close_at_once(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await _read_frame(reader)  # read, then closed unanswered: nothing served

    async def body(link: AgentLink, _opened: list[int]) -> None:
        assert (await link.call("status"))["op"] == "status"

    assert asyncio.run(_run(tmp_path, [close_at_once, _echo_op], body)) == [0, 1]


def test_an_agent_that_closes_again_is_busy(tmp_path: Path) -> None:
    async def close_at_once(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await _read_frame(reader)

    async def body(link: AgentLink, _opened: list[int]) -> None:
        with pytest.raises(BusyError):
            await link.call("status")

    assert asyncio.run(_run(tmp_path, [close_at_once, close_at_once], body)) == [0, 1]


def test_an_answer_cut_midway_is_not_asked_again(tmp_path: Path) -> None:
    """Part of the answer came: the agent may have acted on it, so no second try."""
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_frame(reader)
        writer.write(_frame({"ok": True, "signed": "yes"})[:9])
        await writer.drain()

    async def body(link: AgentLink, _opened: list[int]) -> None:
        with pytest.raises(LockedError):
            await link.call("sign")

    assert asyncio.run(_run(tmp_path, [half, _echo_op], body)) == [0]


@pytest.mark.parametrize("reply", [
    _HEADER.pack(MAX_FRAME + 1) + b"{",  # over the frame limit: refused before it is read
    _frame({"ok": True}) + _frame({"ok": True}),  # more than its answer
    _HEADER.pack(5) + b"[1,2]",  # not an object
], ids=["over-the-limit", "more-than-its-answer", "not-an-object"])
def test_a_malformed_answer_fails_the_call_and_its_connection(tmp_path: Path,
                                                              reply: bytes) -> None:
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_frame(reader)
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(1)

    async def body(link: AgentLink, _opened: list[int]) -> None:
        with pytest.raises(AgentError, match="did not answer properly"):
            await link.call("status")
        assert (await link.call("list"))["op"] == "list"  # on a new connection

    assert asyncio.run(_run(tmp_path, [bad, _echo_op], body)) == [0, 1]


def test_an_agent_that_does_not_answer_in_time_fails_the_call(tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await _read_frame(reader)
        await asyncio.sleep(5)

    async def body(link: AgentLink, _opened: list[int]) -> None:
        with pytest.raises(AgentError, match="did not answer properly"):
            await link.call("status")
        assert (await link.call("list"))["op"] == "list"

    assert asyncio.run(_run(tmp_path, [silent, _echo_op], body, timeout=0.3)) == [0, 1]


def test_a_connection_the_agent_closed_while_idle_is_replaced_before_sending(
        tmp_path: Path) -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                             ) -> None:
        request = await _read_frame(reader)
        writer.write(_frame({"ok": True, "op": request["op"]}))
        await writer.drain()  # then closed while the link is idle

    async def body(link: AgentLink, _opened: list[int]) -> None:
        assert (await link.call("status"))["op"] == "status"
        await asyncio.sleep(0.1)  # the close arrives
        assert (await link.call("list"))["op"] == "list"

    assert asyncio.run(_run(tmp_path, [one_then_close, _echo_op], body)) == [0, 1]


def test_a_call_cancelled_midway_leaves_no_answer_for_the_next(tmp_path: Path) -> None:
    """The first answer arrives after its call was cancelled: on the old connection, so
    the next call (on a new one) gets its own answer, never the stale one."""
    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_frame(reader)
        await asyncio.sleep(0.3)
        writer.write(_frame({"ok": True, "op": "stale"}))
        await writer.drain()
        await _echo_op(reader, writer)

    async def body(link: AgentLink, _opened: list[int]) -> None:
        call = asyncio.ensure_future(link.call("status"))
        await asyncio.sleep(0.1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (await link.call("list"))["op"] == "list"

    assert asyncio.run(_run(tmp_path, [late, _echo_op], body)) == [0, 1]

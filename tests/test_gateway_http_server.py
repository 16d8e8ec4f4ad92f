"""The gateway's own HTTP/1.1 server (gateway/http_server.py) at the byte level, with a small
handler: what the gateway's tests do not reach through the gateway itself (pipelining,
100-continue, HTTP/1.0, HEAD, the caps and limits). Real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from botvault.gateway.http_server import MAX_HEADERS, MAX_LINE, Request, Server, Writer

Reader = asyncio.StreamReader


async def _echo(request: Request, writer: Writer) -> None:
    """Answers with the request's method, target and body; `/stream` in two chunks of
    unknown total length."""
    if request.path == "/stream":
        writer.start(200, [("Content-Type", "text/plain")], None)
        await writer.write(b"first,")
        await writer.write(b"second")
        writer.end()
        return
    writer.answer(200, f"{request.method} {request.path_qs} ".encode() + request.body,
                  [("Content-Type", "text/plain")])


@asynccontextmanager
async def _server(handler: Callable[[Request, Writer], Awaitable[None]] = _echo, *,
                  max_connections: int = 16, idle_timeout: float = 5.0
                  ) -> AsyncIterator[tuple[str, int]]:
    server = Server(handler, max_body=1000, body_timeout=2.0, idle_timeout=idle_timeout,
                    max_connections=max_connections)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    listener = await asyncio.get_running_loop().create_server(server, sock=sock)
    try:
        yield sock.getsockname()[:2]
    finally:
        listener.close()
        server.close_all()


async def _exchange(address: tuple[str, int], data: bytes, *, until_close: bool = True,
                    size: int = 65536) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    try:
        if until_close:
            return await asyncio.wait_for(reader.read(-1), 10)
        return await asyncio.wait_for(reader.read(size), 10)
    finally:
        writer.close()


def test_pipelined_requests_are_answered_in_order() -> None:
    async def scenario() -> bytes:
        async with _server() as address:
            return await _exchange(address, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                   b"\r\none"
                                   b"GET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                   b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    answers = asyncio.run(scenario())
    assert answers.count(b"HTTP/1.1 200 OK") == 3
    assert answers.index(b"POST /a one") < answers.index(b"GET /b?q=1 ") < \
        answers.index(b"GET /c ")
    assert answers.endswith(b"GET /c ")  # and closed after the one that asked


def test_expect_100_continue_is_answered_before_the_body() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        async with _server() as address:
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.write(b"body")
            final = await asyncio.wait_for(reader.read(65536), 10)
            writer.close()
            return interim, final

    interim, final = asyncio.run(scenario())
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200 OK") and final.endswith(b"POST /x body")


def test_an_answer_of_unknown_length_is_chunked_on_1_1_and_ended_by_close_on_1_0() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        async with _server() as address:
            new = await _exchange(address, b"GET /stream HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n")
            old = await _exchange(address, b"GET /stream HTTP/1.0\r\n\r\n")
            return new, old

    new, old = asyncio.run(scenario())
    assert b"Transfer-Encoding: chunked" in new
    assert new.endswith(b"\r\n\r\n6\r\nfirst,\r\n6\r\nsecond\r\n0\r\n\r\n")
    assert b"Transfer-Encoding" not in old and b"Content-Length" not in old
    assert b"Connection: close" in old and old.endswith(b"\r\n\r\nfirst,second")


def test_head_has_the_length_and_no_body() -> None:
    async def scenario() -> bytes:
        async with _server() as address:
            return await _exchange(address, b"HEAD /h HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n")

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 8" in answer
    assert answer.endswith(b"\r\n\r\n")


def test_lines_and_headers_beyond_the_limits_are_refused() -> None:
    async def scenario() -> list[bytes]:
        async with _server() as address:
            long_header = b"X-Long: " + b"a" * MAX_LINE + b"\r\n"
            many = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
            return [await _exchange(address, b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n\r\n"),
                    await _exchange(address, b"GET / HTTP/1.1\r\n" + long_header + b"\r\n"),
                    await _exchange(address, b"GET / HTTP/1.1\r\n" + many + b"\r\n"),
                    await _exchange(address, b"GET / HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n")]

    *refused, fine = asyncio.run(scenario())
    assert all(a.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in a for a in refused)
    assert fine.startswith(b"HTTP/1.1 200 OK")


def test_connections_beyond_the_cap_are_closed_at_once_and_idle_ones_in_time() -> None:
    async def scenario() -> tuple[bytes, bytes, bytes]:
        async with _server(max_connections=2, idle_timeout=0.5) as address:
            held = [await asyncio.open_connection(*address) for _ in range(2)]
            await asyncio.sleep(0.05)
            over = await _exchange(address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            # The two held ones said nothing: closed once idle for the timeout.
            idle = [await asyncio.wait_for(r.read(-1), 10) for r, _ in held]
            for _, w in held:
                w.close()
            after = await _exchange(address, b"GET /ok HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n")
            return over, b"".join(idle), after

    over, idle, after = asyncio.run(scenario())
    assert over == b"" and idle == b""
    assert after.startswith(b"HTTP/1.1 200 OK")


def test_a_bot_that_goes_away_does_not_cancel_its_request() -> None:
    finished: list[str] = []
    started = asyncio.Event()

    async def slow(request: Request, writer: Writer) -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.append(request.path)
        writer.answer(200, b"late")  # to a closed connection: dropped, no error

    async def scenario() -> None:
        async with _server(slow) as address:
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"POST /order HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            await asyncio.wait_for(started.wait(), 10)
            writer.close()
            await asyncio.sleep(0.5)
            del reader

    asyncio.run(scenario())
    assert finished == ["/order"]


def test_a_pipelined_flood_is_cut_at_the_cap() -> None:
    from botvault.gateway.http_server import MAX_PIPELINED

    async def scenario() -> tuple[bytes, bytes]:
        async with _server() as address:
            within = await _exchange(address, b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n" * 8 +
                                     b"GET /q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            flood = await _exchange(address, b"GET /p HTTP/1.1\r\n\r\n" * 5000)
            return within, flood

    within, flood = asyncio.run(scenario())
    assert within.count(b"HTTP/1.1 200 OK") == 9
    # Closed once more than the cap waited: far fewer answers than requests.
    assert flood.count(b"HTTP/1.1 200 OK") <= MAX_PIPELINED + 1


def test_a_stop_answers_the_requests_in_progress_then_closes() -> None:
    started = asyncio.Event()

    async def slow(request: Request, writer: Writer) -> None:
        started.set()
        await asyncio.sleep(0.3)
        writer.answer(200, b"finished")

    async def scenario() -> tuple[bytes, bytes]:
        server = Server(slow, max_body=1000, body_timeout=2.0, idle_timeout=30.0,
                        max_connections=8)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        listener = await asyncio.get_running_loop().create_server(server, sock=sock)
        idle_reader, idle_writer = await asyncio.open_connection(*sock.getsockname()[:2])
        reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        writer.write(b"POST /order HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        await asyncio.wait_for(started.wait(), 10)
        listener.close()
        await server.drain(10)  # the stop: the idle one closed, the busy one answered
        answer = await asyncio.wait_for(reader.read(-1), 10)
        idle = await asyncio.wait_for(idle_reader.read(-1), 10)
        writer.close()
        idle_writer.close()
        return answer, idle

    answer, idle = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"finished")
    assert idle == b""


SMUGGLING = {
    "length and chunked": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    "two lengths": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 6\r\n"
                   b"\r\nabcdef",
    "disguised chunked": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
                         b"0\r\n\r\n",
    "space before the colon": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\nabcd",
    "bare line feeds": b"GET /a HTTP/1.1\nHost: x\n\n",
}


def test_ambiguous_framing_is_refused_not_guessed() -> None:
    # What request smuggling lives on: a body whose end two readers could see differently.
    async def scenario() -> dict[str, bytes]:
        async with _server() as address:
            return {name: await _exchange(address, data) for name, data in SMUGGLING.items()}

    for name, answer in asyncio.run(scenario()).items():
        assert answer.startswith(b"HTTP/1.1 400 "), name
        assert answer.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in answer, name

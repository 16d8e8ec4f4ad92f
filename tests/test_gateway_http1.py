"""The gateway's lean HTTP/1.1 client against real sockets: framing, reuse, outcomes, TLS.

Each test runs a scripted raw server on loopback (what it answers is written out byte for
byte), so every framing and failure the client must tell apart is produced for real.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import pytest
import trustme

from botvault.gateway.http1 import AnswerLost, Client, NotSent

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head, await reader.readexactly(length)


class Server:
    """Answers each request with the next of `answers` (raw bytes, or a script)."""

    def __init__(self, answers: list[bytes | Script], tls: ssl.SSLContext | None = None
                 ) -> None:
        self.answers = answers
        self.tls = tls
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        self.connections += 1
        try:
            while self.answers:
                self.requests.append(await _read_request(reader))
                answer = self.answers.pop(0)
                if isinstance(answer, bytes):
                    writer.write(answer)
                    await writer.drain()
                else:
                    await answer(reader, writer)
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        scheme = "https" if self.tls else "http"
        return f"{scheme}://localhost:{self.server.sockets[0].getsockname()[1]}"


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s"
            b"\r\n%s" % (len(body), extra, body))


async def _read_all(client: Client, url: str) -> bytes:
    return await (await client.request("POST", url, "/x", {}, b"")).read()


def _run(answers: list[bytes | Script], steps: Callable[[Client, str], Awaitable[None]],
         timeout: float = 5.0) -> Server:
    server = Server(answers)

    async def main() -> None:
        url = await server.start()
        client = Client(tls=ssl.create_default_context(), timeout=timeout)
        try:
            await steps(client, url)
        finally:
            await client.close()
            server.server.close()

    asyncio.run(main())
    return server


def test_kept_alive_content_length_and_exact_bytes_out() -> None:
    async def steps(client: Client, url: str) -> None:
        for body in (b'{"a":1}', b'{"b":2}'):
            answer = await client.request("POST", url, "/0/private/Balance?x=%2F",
                                          {"API-Key": "k", "Content-Type": "form"}, b"n=1")
            assert (answer.status, answer.header("content-type")) == (200, "application/json")
            assert await answer.read() == body

    server = _run([_ok(b'{"a":1}'), _ok(b'{"b":2}')], steps)
    assert server.connections == 1
    head, body = server.requests[0]
    assert head == (b"POST /0/private/Balance?x=%2F HTTP/1.1\r\nAPI-Key: k\r\n"
                    b"Content-Type: form\r\nContent-Length: 3\r\nHost: localhost:" +
                    head.split(b"Host: localhost:")[1])
    assert body == b"n=1"


def test_chunked_with_extensions_and_trailers_and_interim_answers() -> None:
    answer = (b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3;ext=1\r\nabc\r\n0a\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n")

    async def steps(client: Client, url: str) -> None:
        for _ in range(2):
            got = await client.request("GET", url, "/x", {}, b"")
            assert await got.read() == b"abc0123456789"

    server = _run([answer, answer], steps)
    assert server.connections == 1
    assert b"Content-Length" not in server.requests[0][0]  # a GET without a body


def test_close_and_until_eof_bodies_are_not_reused() -> None:
    async def steps(client: Client, url: str) -> None:
        got = await client.request("POST", url, "/x", {}, b"")
        assert await got.read() == b"{}"
        got = await client.request("POST", url, "/x", {}, b"")
        assert await got.read() == b"until the end"

    async def until_eof(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await w.drain()

    server = _run([_ok(b"{}", b"Connection: close\r\n"), until_eof], steps)
    assert server.connections == 2
    assert b"Content-Length: 0" in server.requests[0][0]  # a POST always says its length


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def close_after(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(_ok(b"1"))
        await w.drain()

    async def steps(client: Client, url: str) -> None:
        assert await (await client.request("POST", url, "/x", {}, b"")).read() == b"1"
        await asyncio.sleep(0.1)  # the server has closed it meanwhile
        assert await (await client.request("POST", url, "/x", {}, b"")).read() == b"2"

    server = _run([close_after, _ok(b"2")], steps)
    assert server.connections == 2


@pytest.mark.parametrize("headers", [{"X": "a\r\nInjected: 1"}, {"X\r\nY": "1"},
                                     {"X": "caf\u00e9\u20ac"}, {"A:B": "1"}])
def test_headers_that_are_not_one_line_are_never_sent(headers: dict[str, str]) -> None:
    async def steps(client: Client, url: str) -> None:
        with pytest.raises(NotSent):
            await client.request("POST", url, "/x", headers, b"")

    assert _run([_ok(b"")], steps).requests == []


def test_unreachable_is_not_sent() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = Client(tls=ssl.create_default_context(), timeout=2)
        with pytest.raises(NotSent):
            await client.request("POST", f"http://127.0.0.1:{port}", "/x", {}, b"")

    asyncio.run(main())


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # cut mid-body
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # cut mid-chunk
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # not a chunk size
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
])
def test_answers_cut_or_malformed_are_lost(answer: bytes) -> None:
    async def cut(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answer)
        await w.drain()

    async def steps(client: Client, url: str) -> None:
        with pytest.raises(AnswerLost):
            await _read_all(client, url)

    _run([cut], steps)


@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
                                    b"garbage\r\n\r\n"])
def test_a_stalled_or_garbled_answer_is_lost(answer: bytes) -> None:
    async def stall(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answer)
        await w.drain()
        await asyncio.sleep(3)

    async def steps(client: Client, url: str) -> None:
        with pytest.raises(AnswerLost):
            await _read_all(client, url)

    _run([stall], steps, timeout=0.3)


def test_tls_verified_against_the_given_authority_only() -> None:
    ca, other = trustme.CA(), trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)

    async def main() -> None:
        server = Server([_ok(b"{}")], tls=server_tls)
        url = await server.start()
        for authority, fine in ((other, False), (ca, True)):
            context = ssl.create_default_context()
            authority.configure_trust(context)
            client = Client(tls=context, timeout=5)
            try:
                if fine:
                    got = await client.request("POST", url, "/x", {}, b"")
                    assert await got.read() == b"{}"
                else:
                    with pytest.raises(NotSent, match="certificate"):
                        await client.request("POST", url, "/x", {}, b"")
            finally:
                await client.close()
        server.server.close()

    asyncio.run(main())


def test_cut_after_aborts_a_stalled_read_and_only_that() -> None:
    from botvault.gateway.timeouts import cut_after

    kept: list[asyncio.StreamWriter] = []  # the server's ends stay open

    def answer_once(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        kept.append(w)
        w.write(b"quick\n")

    async def main() -> None:
        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # Read in time: the answer, and the connection stays open past the deadline.
        assert await cut_after(reader.readline(), 0.2, writer.transport) == b"quick\n"
        await asyncio.sleep(0.3)
        assert not writer.transport.is_closing()
        with pytest.raises(asyncio.TimeoutError):  # nothing more comes: cut
            await cut_after(reader.readline(), 0.2, writer.transport)
        assert writer.transport.is_closing()
        server.close()

    asyncio.run(main())


def test_a_small_answer_comes_whole_with_its_head_and_frees_its_connection() -> None:
    """An answer of at most 64 KiB is read with its head (`whole`): its connection is back
    in the pool at once, even when the caller only closes it; a larger one streams."""
    large = b"y" * (70 * 1024)

    async def steps(client: Client, url: str) -> None:
        got = await client.request("POST", url, "/x", {}, b"")
        assert got.whole == b'{"a":1}'
        got.close()  # not read at all: nothing left unread on the connection
        got = await client.request("POST", url, "/x", {}, b"")
        assert (got.whole, await got.read()) == (b'{"b":2}', b'{"b":2}')
        got = await client.request("POST", url, "/x", {}, b"")
        assert got.whole is None
        assert await got.read() == large

    server = _run([_ok(b'{"a":1}'), _ok(b'{"b":2}'), _ok(large)], steps)
    assert server.connections == 1

"""The gateway's HTTP/1.1 server: httptools' parser (llhttp, Node.js's) under an asyncio
Protocol, with what Kraken's clients need and nothing else.

Why not aiohttp's server: in the floor prototype of bench/bench_floor.py, aiohttp's server in
place of this one added 0.2 ms to every request and 0.2 ms of CPU (issue 22); the gateway
itself was then 1.3x the floor. The limits are the gateway's own, in one place here:

- the request line and each header at most `MAX_LINE` bytes, at most `MAX_HEADERS` headers,
  the head whole within `idle_timeout` (a connection idle that long is closed too);
- the body whole within `body_timeout` after the head, and at most `max_body` bytes: a body
  announced or found larger is handed on at once as `TOO_LARGE` (the handler answers 413
  and closes; the rest is never read), a late one as `SLOW` (408, closed);
- malformed input: 400 and closed. One request at a time per connection, in order
  (pipelined ones wait, reading paused; beyond `MAX_PIPELINED` waiting, the connection is
  closed); a bot that goes away does not cancel its request.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus

import httptools  # type: ignore[import-not-found,unused-ignore]
from multidict import CIMultiDict

__all__ = ["MAX_HEADERS", "MAX_LINE", "MAX_PIPELINED", "Problem", "Request", "Server", "Writer"]

MAX_LINE = 8190  # the request line and each header (Kraken's requests are small)
MAX_HEADERS = 100
MAX_PIPELINED = 32  # requests waiting on one connection behind the one being answered
_HIGH_WATER = 256 * 1024  # buffered answer bytes before `write` waits for the bot to read


class Problem(enum.Enum):
    """Why a request came without its whole body."""

    TOO_LARGE = "too large"
    SLOW = "slow"


class Request:
    """One request: `path` and `query` raw (as sent, not decoded), headers by any case."""

    __slots__ = ("body", "headers", "method", "path", "problem", "query", "version")

    def __init__(self, method: str, target: str, headers: CIMultiDict[str], version: str
                 ) -> None:
        self.method, self.headers, self.version = method, headers, version
        self.path, _, self.query = target.partition("?")
        self.body = b""
        self.problem: Problem | None = None

    @property
    def path_qs(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


class Writer:
    """The answer to one request: `answer` whole, or `start`, `write`..., `end`."""

    def __init__(self, conn: _Connection, request: Request, keep_alive: bool) -> None:
        self._conn, self._head_only = conn, request.method == "HEAD"
        self._http11 = request.version == "1.1"
        self.keep_alive = keep_alive
        self._chunked = False
        self._head_out = b""  # a started answer's head, sent with its first bytes

    def answer(self, status: int, body: bytes, headers: Iterable[tuple[str, str]] = (),
               *, close: bool = False) -> None:
        """A whole answer in one write; `close` ends the connection after it."""
        if close:
            self.keep_alive = False
        self._head_out = b""  # a started answer whose body never came: replaced by this one
        self._conn.send(self._head(status, headers, len(body)) +
                        (b"" if self._head_only else body))
        if close:
            self._conn.close()

    def start(self, status: int, headers: Iterable[tuple[str, str]],
              content_length: int | None) -> None:
        if content_length is None and not self._http11:
            self.keep_alive = False  # HTTP/1.0: the end of the body is the close
        self._chunked = content_length is None and self._http11
        # Held until the first bytes of the body: one write, and one wake of the bot, for
        # a small answer instead of two.
        self._head_out = self._head(status, headers, content_length)

    async def write(self, chunk: bytes) -> None:
        if chunk and not self._head_only:
            data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if self._chunked else chunk
            if self._head_out:
                data, self._head_out = self._head_out + data, b""
            self._conn.send(data)
            await self._conn.drained()

    def end(self) -> None:
        tail = b"0\r\n\r\n" if self._chunked and not self._head_only else b""
        if self._head_out or tail:
            self._conn.send(self._head_out + tail)
            self._head_out = b""
        if not self.keep_alive:
            self._conn.close()

    @property
    def sent_nothing(self) -> bool:
        """True while no byte of a started answer has gone to the bot."""
        return bool(self._head_out)

    def abort(self) -> None:
        """Cut the connection: the bot sees an answer cut short, never one that looks whole."""
        self.keep_alive = False
        self._conn.abort()

    def _head(self, status: int, headers: Iterable[tuple[str, str]],
              content_length: int | None) -> bytes:
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if content_length is not None:
            lines.append(f"Content-Length: {content_length}")
        elif self._http11:
            lines.append("Transfer-Encoding: chunked")
        if not self.keep_alive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


Handler = Callable[[Request, Writer], Awaitable[None]]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class Server:
    """The protocol factory for `loop.create_server`; `connections` are the open ones."""

    def __init__(self, handler: Handler, *, max_body: int, body_timeout: float,
                 idle_timeout: float, max_connections: int) -> None:
        self.handler, self.max_body = handler, max_body
        self.body_timeout, self.idle_timeout = body_timeout, idle_timeout
        self.max_connections = max_connections
        self.connections: set[_Connection] = set()

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def close_idle(self) -> None:
        """Close every connection not in the middle of a request."""
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` for the requests in progress to be answered, then close
        every connection (a stop in order: no request cut that could be finished)."""
        deadline = asyncio.get_running_loop().time() + timeout
        self.close_idle()
        while any(conn.busy for conn in self.connections) and \
                asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            self.close_idle()
        self.close_all()

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close()


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._ready: collections.deque[tuple[Request, bool]] = collections.deque()
        self._current: Request | None = None
        self._target = b""
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._body: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._busy = False  # a request is being answered

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._server.connections.add(self)
        if len(self._server.connections) > self._server.max_connections:
            transport.abort()  # type: ignore[attr-defined]
            return
        self._arm(self._server.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 -- the Protocol
        self._server.connections.discard(self)
        self._disarm()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._ready.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400)
        except httptools.HttpParserError:
            if self._current is None or self._current.problem is None:
                self._refuse(400)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._target, self._headers = b"", CIMultiDict()
        self._body, self._size = [], 0

    def on_url(self, url: bytes) -> None:
        self._target += url
        if len(self._target) > MAX_LINE:
            raise httptools.HttpParserError("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_LINE or len(self._headers) >= MAX_HEADERS:
            raise httptools.HttpParserError("header too long")
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        parser = self._parser
        request = Request(parser.get_method().decode("ascii", "replace"),
                          self._target.decode("latin-1"), self._headers,
                          parser.get_http_version())
        self._current = request
        length = request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self._server.max_body:
            self._hand_on(request, Problem.TOO_LARGE)
            return
        if request.headers.get("Expect", "").lower() == "100-continue":
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._arm(self._server.body_timeout, self._too_slow)

    def on_body(self, body: bytes) -> None:
        request = self._current
        if request is None or request.problem is not None:
            return
        self._size += len(body)
        if self._size > self._server.max_body:
            self._hand_on(request, Problem.TOO_LARGE)
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        request = self._current
        if request is None or request.problem is not None:
            return
        if len(self._ready) >= MAX_PIPELINED:  # no bot pipelines this deep: a flood
            raise httptools.HttpParserError("too many pipelined requests")
        request.body = b"".join(self._body)
        self._current = None
        self._disarm()
        self._queue(request, self._parser.should_keep_alive())

    # -- serving ---------------------------------------------------------------------------

    def _hand_on(self, request: Request, problem: Problem) -> None:
        """Hand on a request without its body; nothing more is read from this connection."""
        request.problem = problem
        self._disarm()
        if self._transport is not None:
            self._transport.pause_reading()
        self._queue(request, False)

    def _too_slow(self) -> None:
        if self._current is not None and self._current.problem is None:
            self._hand_on(self._current, Problem.SLOW)

    def _queue(self, request: Request, keep_alive: bool) -> None:
        self._ready.append((request, keep_alive))
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._serve())

    async def _serve(self) -> None:
        while self._ready:
            request, keep_alive = self._ready.popleft()
            transport = self._transport
            if transport is None or transport.is_closing():
                return
            self._busy = True
            if request.problem is None:
                transport.pause_reading()  # pipelined requests wait for this answer
            writer = Writer(self, request, keep_alive)
            try:
                await self._server.handler(request, writer)
            except Exception:  # the handler's own fault (it answers every error itself)
                self.abort()
                return
            finally:
                self._busy = False
            if not writer.keep_alive or transport.is_closing():
                self.close()
                return
            if request.problem is None:
                transport.resume_reading()
            self._arm(self._server.idle_timeout)

    @property
    def busy(self) -> bool:
        return self._busy or bool(self._ready)

    def send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def drained(self) -> None:
        writable = self._writable
        if writable is not None and not writable.done():
            await writable

    def close(self) -> None:
        self._disarm()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        self._disarm()
        if self._transport is not None:
            self._transport.abort()

    def _refuse(self, status: int) -> None:
        """Malformed input: answered at once (when no answer is under way or waiting) and
        closed."""
        if not self._busy and not self._ready:
            self.send(f"HTTP/1.1 {status} {_reason(status)}\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n".encode("ascii"))
        self.close()

    def _arm(self, seconds: float, then: Callable[[], None] | None = None) -> None:
        self._disarm()
        self._timer = self._loop.call_later(seconds, then or self._idle)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle(self) -> None:
        self._timer = None
        if not self._busy:
            self.close()

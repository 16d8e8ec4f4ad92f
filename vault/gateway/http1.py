"""A lean HTTP/1.1 client for the gateway's one kind of upstream request, on asyncio streams.

aiohttp's client cost the gateway about 0.2 ms of CPU per request (its request and response
objects, URL handling, cookie jar, tracing hooks), where what one forwarded Kraken request
needs is: a kept-alive connection (TLS verified), the request written in one piece, the
answer's status line and headers parsed, and its body read by its framing (Content-Length,
chunked, or until the connection closes). That is all this module does.

- **Outcomes**: `NotSent` when nothing can have left (no connection, its certificate refused,
  a header that cannot be written); `AnswerLost` once the request was written (the exchange
  may have acted on it) and no whole answer came back.
- **Connections**: one pool per origin; a connection goes back to the pool only after its
  answer was read whole and neither side asked to close; one idle longer than `IDLE_S`, or
  closed by the server meanwhile, is dropped rather than reused.
- **Bounds**: connecting, and everything up to the end of the answer's headers, within
  `timeout`; then each read of the body within `timeout` (a long answer streams, a stalled one
  is cut); a status line and headers of at most 64 KiB.
- **Bytes**: nothing is added but Host and Content-Length (the latter as aiohttp's client
  does: for a body, and for every method but GET, HEAD, OPTIONS and TRACE); nothing is
  decompressed.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .timeouts import bounded, cut_after

__all__ = ["IDLE_S", "AnswerLost", "Client", "NotSent", "Response", "UpstreamError"]

IDLE_S = 15.0  # aiohttp's keep-alive default: servers close idle connections about then
_HEAD_LIMIT = 1 << 16
_CHUNK = 1 << 16
_NO_LENGTH_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_FORBIDDEN = ("\r", "\n", "\0")
# How a read on a connection fails: closed, reset, timed out (asyncio's TimeoutError is the
# builtin one from Python 3.11), cut short, over the head limit, malformed.
_CUT = (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
        ValueError)


class UpstreamError(Exception):
    """The exchange could not be reached, or its answer did not arrive whole."""


class NotSent(UpstreamError):
    """The request never left: no connection, or the exchange's certificate was refused."""


class AnswerLost(UpstreamError):
    """The request was (or may have been) sent and no whole answer came back."""


@dataclass(eq=False)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float) -> bool:
        return (now - self.idle_since < IDLE_S and not self.reader.at_eof()
                and not self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


@dataclass
class _Origin:
    scheme: str
    host: str
    port: int
    host_header: bytes
    idle: list[_Conn] = field(default_factory=list)


@dataclass(eq=False)
class Response:
    """Status and headers (names lower-cased, in order); the body comes from `chunks()`,
    after which the connection is reused or closed; `close()` when not read to the end.
    `whole`: the body, when it came with the head (a Kraken answer nearly always); the
    connection is then back in the pool already."""

    status: int
    headers: list[tuple[str, str]]
    content_length: int | None
    _body: AsyncIterator[bytes]
    _conn: _Conn | None
    whole: bytes | None = None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (lower case), or None."""
        return next((v for k, v in self.headers if k == name), None)

    def chunks(self) -> AsyncIterator[bytes]:
        return self._body

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (AnswerLost when it is longer than `limit`)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self._body:
            size += len(chunk)
            if limit is not None and size > limit:
                self.close()
                raise AnswerLost("the exchange's answer was too large")
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Client:
    """Kept-alive connections to a few origins. Create, use and close on one event loop."""

    def __init__(self, *, tls: ssl.SSLContext, timeout: float) -> None:
        self._tls = tls
        self._timeout = timeout
        self._origins: dict[str, _Origin] = {}

    def _origin(self, origin: str) -> _Origin:
        found = self._origins.get(origin)
        if found is None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise NotSent(f"not an http(s) origin: {origin!r}")
            default = 443 if parts.scheme == "https" else 80
            port = parts.port or default
            host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
            host_header = host if port == default else f"{host}:{port}"
            found = self._origins[origin] = _Origin(parts.scheme, parts.hostname, port,
                                                    host_header.encode("idna"))
        return found

    async def _connect(self, origin: _Origin) -> _Conn:
        tls = self._tls if origin.scheme == "https" else None
        try:
            reader, writer = await bounded(asyncio.open_connection(
                origin.host, origin.port, ssl=tls, limit=_HEAD_LIMIT,
                server_hostname=origin.host if tls is not None else None), self._timeout)
        except ssl.SSLError as exc:
            raise NotSent(f"the exchange's certificate was refused: {exc}") from None
        except (OSError, asyncio.TimeoutError) as exc:
            raise NotSent(f"the exchange could not be reached: {type(exc).__name__}"
                          ) from None
        return _Conn(reader, writer)

    async def request(self, method: str, origin: str, target: str,
                      headers: dict[str, str], body: bytes) -> Response:
        """Send; return once the answer's status and headers are in (its body follows)."""
        where = self._origin(origin)
        head = _head(method, target, where.host_header, headers, body)
        now = time.monotonic()
        conn = None
        while where.idle:
            candidate = where.idle.pop()
            if candidate.usable(now):
                conn = candidate
                break
            candidate.close()
        if conn is None:
            conn = await self._connect(where)
        try:
            conn.writer.write(head + body if len(body) < _CHUNK else head)
            if len(body) >= _CHUNK:
                conn.writer.write(body)
            # One deadline for the head and a small body (a Kraken answer): one timer.
            answer = await cut_after(_read_answer(conn.reader, method), self._timeout,
                                     conn.writer.transport)
        except _CUT as exc:
            conn.close()
            raise AnswerLost(f"the exchange's answer was lost: {type(exc).__name__}"
                             ) from None
        if answer.whole is not None:
            # Read whole with the head: no body generator to run, the connection free now.
            if answer.keep:
                conn.idle_since = time.monotonic()
                where.idle.append(conn)
            else:
                conn.close()
            return Response(answer.status, answer.fields, answer.length,
                            _one(answer.whole), None, answer.whole)
        response = Response(answer.status, answer.fields, answer.length, _empty(), conn)
        response._body = self._body(where, response, answer)
        return response

    async def _body(self, where: _Origin, response: Response, answer: _Answer
                    ) -> AsyncIterator[bytes]:
        conn = response._conn
        assert conn is not None  # noqa: S101 - set by request() for this very generator
        reader = conn.reader
        try:
            if answer.length is not None:
                async for chunk in _exactly(reader, answer.length, self._timeout):
                    yield chunk
            elif answer.chunked:
                async for chunk in _chunked(reader, self._timeout):
                    yield chunk
            else:
                while True:
                    chunk = await bounded(reader.read(_CHUNK), self._timeout)
                    if not chunk:
                        break
                    yield chunk
        except _CUT as exc:
            response.close()
            raise AnswerLost(f"the exchange's answer was cut: {type(exc).__name__}") from None
        if answer.keep and response._conn is not None:
            conn.idle_since = time.monotonic()
            where.idle.append(conn)
            response._conn = None
        else:
            response.close()

    async def close(self) -> None:
        for origin in self._origins.values():
            for conn in origin.idle:
                conn.close()
            origin.idle.clear()


def _head(method: str, target: str, host: bytes, headers: dict[str, str], body: bytes
          ) -> bytes:
    """The request line and headers, or NotSent when any would not be one line."""
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers.items():
        if not name or ":" in name or name != name.strip():
            raise NotSent("a header name is malformed")
        lines.append(f"{name}: {value}")
    if body or method not in _NO_LENGTH_METHODS:
        lines.append(f"Content-Length: {len(body)}")
    if " " in target or " " in method or any(
            c in line for line in lines for c in _FORBIDDEN):
        raise NotSent("a request line or header would not be one line")
    text = "\r\n".join(lines)
    try:
        return b"%s\r\nHost: %s\r\n\r\n" % (text.encode("latin-1"), host)
    except UnicodeEncodeError:
        raise NotSent("a header is not Latin-1 text") from None


@dataclass
class _Answer:
    """An answer's head and how its body is framed; `whole` is the body when it was small
    enough to read with the head."""

    status: int
    fields: list[tuple[str, str]]
    length: int | None  # by Content-Length (0: none at all)
    chunked: bool
    keep: bool  # the connection may carry the next request
    whole: bytes | None = None


async def _read_answer(reader: asyncio.StreamReader, method: str) -> _Answer:
    status, fields, version = await _read_answer_head(reader)
    tokens = {t.strip().lower() for k, v in fields if k == "connection" for t in v.split(",")}
    keep = "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)
    encoding = [v.strip().lower() for k, v in fields if k == "transfer-encoding"]
    lengths = {v.strip() for k, v in fields if k == "content-length"}
    answer = _Answer(status, fields, None, False, keep)
    if method == "HEAD" or status in (204, 304):
        answer.length, answer.whole = 0, b""
    elif encoding:
        answer.chunked = encoding[-1] == "chunked"
        answer.keep = keep and answer.chunked  # else: read until the connection closes
    elif lengths:
        (text,) = lengths if len(lengths) == 1 else ("",)
        if not (text.isascii() and text.isdigit()):
            raise ValueError("a malformed Content-Length")
        answer.length = int(text)
        if answer.length <= _CHUNK:
            answer.whole = await reader.readexactly(answer.length)
    else:
        answer.keep = False
    return answer


async def _read_answer_head(reader: asyncio.StreamReader
                            ) -> tuple[int, list[tuple[str, str]], str]:
    """The final answer's status line and headers; interim ones (1xx, say 103 Early Hints)
    are skipped."""
    while True:
        status, fields, version = await _read_head(reader)
        if not 100 <= status < 200:
            return status, fields, version


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]], str]:
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit():
        raise ValueError("not an HTTP/1.x status line")
    fields = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError("a malformed header line")
        fields.append((name.lower(), value.strip(" \t")))
    return int(code), fields, version


async def _chunked(reader: asyncio.StreamReader, timeout: float) -> AsyncIterator[bytes]:
    while True:
        size_line = await bounded(reader.readuntil(b"\r\n"), timeout)
        size_text = size_line[:-2].split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise ValueError("a malformed chunk size")
        size = int(size_text, 16)
        if size == 0:
            while await bounded(reader.readuntil(b"\r\n"), timeout) != b"\r\n":
                pass  # trailers, if any
            return
        async for chunk in _exactly(reader, size, timeout):
            yield chunk
        if await bounded(reader.readexactly(2), timeout) != b"\r\n":
            raise ValueError("a chunk not followed by CRLF")


async def _exactly(reader: asyncio.StreamReader, size: int, timeout: float
                   ) -> AsyncIterator[bytes]:
    """`size` bytes as they arrive; IncompleteReadError when the connection ends first."""
    left = size
    while left > 0:
        chunk = await bounded(reader.read(min(left, _CHUNK)), timeout)
        if not chunk:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(chunk)
        yield chunk


async def _one(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator

"""Sending a request on to the exchange, with TLS verified, and streaming its answer back.

Byte-faithful both ways. Going out: only the headers a request needs are passed on (content
type, user agent, accept, accept-encoding) and only when the bot sent them; aiohttp adds none
of its own beyond Host and Content-Length (`skip_auto_headers`), every other header the bot
sent, its credentials above all, stays behind, and the real key's headers from the agent are
added. The URL's query string is passed on byte for byte (yarl must not requote it: on a
Futures request it is part of what was signed). Coming back: the status, the body as the
exchange sent it (not decompressed, of any size: streamed, never held whole) and the headers
that describe it.

What went wrong is told apart by whether the request can have reached the exchange:
`NotSent` (no connection, or its certificate refused: safe to retry) versus `AnswerLost`
(written, and then the connection died or timed out: the exchange may have acted on it).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from .timeouts import bounded

__all__ = [
    "ANSWER_HEADERS",
    "PASSED_HEADERS",
    "AnswerLost",
    "NotSent",
    "Upstream",
    "UpstreamAnswer",
    "UpstreamError",
    "tls_context",
]

PASSED_HEADERS = ("content-type", "user-agent", "accept", "accept-encoding")
# Headers of the exchange's answer that describe its body; the rest are the exchange's own.
ANSWER_HEADERS = ("Content-Type", "Content-Encoding", "Content-Disposition")
_CHUNK = 1 << 16
# aiohttp's client adds these when the caller does not; the bot's request must go as it was.
_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class UpstreamError(Exception):
    """The exchange could not be reached, or its answer did not arrive whole."""


class NotSent(UpstreamError):
    """The request never left: no connection, or the exchange's certificate was refused."""


class AnswerLost(UpstreamError):
    """The request was (or may have been) sent and no whole answer came back."""


# Failures that happen before a single byte of the request is written.
_BEFORE_SENDING = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError,
                   aiohttp.ServerFingerprintMismatch, aiohttp.InvalidURL)


@dataclass
class UpstreamAnswer:
    """The exchange's status and headers; its body is read with `chunks` (then `close`)."""

    status: int
    headers: dict[str, str]
    content_length: int | None
    _response: aiohttp.ClientResponse

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; AnswerLost when the connection dies or stalls midway."""
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AnswerLost(f"the exchange's answer was cut: {type(exc).__name__}") from None

    async def read(self, limit: int) -> bytes:
        """The whole body, then closed; AnswerLost when it is cut or over `limit` bytes."""
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in self.chunks():
                size += len(chunk)
                if size > limit:
                    raise AnswerLost("the exchange's answer is over the limit")
                chunks.append(chunk)
        finally:
            self.close()
        return b"".join(chunks)

    def close(self) -> None:
        self._response.close()


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name verified, against `ca_file` if given, else the system's."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Upstream:
    """One connection pool to the exchanges. Create and close inside the event loop."""

    def __init__(self, *, ca_file: Path | None, timeout: float) -> None:
        connector = aiohttp.TCPConnector(ssl=tls_context(ca_file), limit=0,
                                         enable_cleanup_closed=True)
        # A connect that hangs is a ConnectionTimeoutError (not sent). Up to the answer's
        # headers the whole exchange is bounded (`send`); a long answer is then bounded by
        # how long it may stall, not by its size.
        self._timeout = timeout
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
            auto_decompress=False, skip_auto_headers=_SKIP_AUTO)

    async def send(self, method: str, origin: str, raw_path_qs: str, headers: dict[str, str],
                   body: bytes) -> UpstreamAnswer:
        """Send, and return once the answer's status and headers are in (its body follows)."""
        url = URL(origin + raw_path_qs, encoded=True)
        try:
            response = await bounded(self._session.request(
                method, url, headers=headers, data=body if body else None,
                allow_redirects=False), self._timeout)
        except aiohttp.ClientSSLError as exc:
            raise NotSent(f"the exchange's certificate was refused: {exc}") from None
        except _BEFORE_SENDING as exc:
            raise NotSent(f"the exchange could not be reached: {type(exc).__name__}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AnswerLost(f"the exchange's answer was lost: {type(exc).__name__}") from None
        kept = {name: response.headers[name] for name in ANSWER_HEADERS
                if name in response.headers}
        return UpstreamAnswer(response.status, kept, response.content_length, response)

    async def close(self) -> None:
        await self._session.close()

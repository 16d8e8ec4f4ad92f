"""Sending a request on to the exchange, with TLS verified, and streaming its answer back.

Byte-faithful both ways. Going out: only the headers a request needs are passed on (content
type, user agent, accept, accept-encoding) and only when the bot sent them; the client
(`http1`, the gateway's own lean HTTP/1.1 client on kept-alive connections) adds none of its
own beyond Host and Content-Length; every other header the bot sent, its credentials above
all, stays behind, and the real key's headers from the agent are added. The URL's query
string is passed on byte for byte (on a Futures request it is part of what was signed).
Coming back: the status, the body as the exchange sent it (not decompressed, of any size:
streamed, never held whole) and the headers that describe it.

What went wrong is told apart by whether the request can have reached the exchange:
`NotSent` (no connection, or its certificate refused: safe to retry) versus `AnswerLost`
(written, and then the connection died or timed out: the exchange may have acted on it).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from . import http1
from .http1 import AnswerLost, NotSent, UpstreamError

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
_ANSWER_NAMES = {name.lower(): name for name in ANSWER_HEADERS}


@dataclass
class UpstreamAnswer:
    """The exchange's status and headers; its body is read with `chunks` (then `close`)."""

    status: int
    headers: dict[str, str]
    content_length: int | None
    _response: http1.Response
    whole: bytes | None = None  # the body, when it came with the head (then nothing to close)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; AnswerLost when the connection dies or stalls midway."""
        async for chunk in self._response.chunks():
            yield chunk

    async def read(self, limit: int) -> bytes:
        """The whole body, then closed; AnswerLost when it is cut or over `limit` bytes."""
        try:
            return await self._response.read(limit)
        finally:
            self.close()

    def close(self) -> None:
        self._response.close()


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name verified, against `ca_file` if given, else the system's."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Upstream:
    """Kept-alive connections to the exchanges (`http1.Client`). Create and close inside the
    event loop. Up to the answer's headers the whole exchange is bounded by `timeout`; a
    long answer is then bounded by how long it may stall, not by its size."""

    def __init__(self, *, ca_file: Path | None, timeout: float) -> None:
        self._client = http1.Client(tls=tls_context(ca_file), timeout=timeout)

    async def send(self, method: str, origin: str, raw_path_qs: str, headers: dict[str, str],
                   body: bytes) -> UpstreamAnswer:
        """Send, and return once the answer's status and headers are in (its body follows)."""
        response = await self._client.request(method, origin, raw_path_qs, headers, body)
        kept: dict[str, str] = {}
        for name, value in response.headers:
            canonical = _ANSWER_NAMES.get(name)
            if canonical is not None and canonical not in kept:
                kept[canonical] = value
        return UpstreamAnswer(response.status, kept, response.content_length, response,
                              response.whole)

    async def close(self) -> None:
        await self._client.close()

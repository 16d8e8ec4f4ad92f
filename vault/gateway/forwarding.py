"""Sending a request on to the exchange, with TLS verified, and taking its answer back.

Only the headers a request needs are passed on (content type, user agent, accept); every other
header the bot sent, its credentials above all, stays behind, and the real key's headers from
the agent are added. The URL's query string is passed on byte for byte (yarl must not requote
it: on a Futures GET it is what was signed).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

__all__ = ["PASSED_HEADERS", "Upstream", "UpstreamAnswer", "UpstreamError", "tls_context"]

PASSED_HEADERS = ("content-type", "user-agent", "accept")
_ANSWER_LIMIT = 16 << 20  # an exchange answer larger than this is not a Kraken answer


class UpstreamError(Exception):
    """The exchange could not be reached, its certificate was refused, or it timed out."""


@dataclass(frozen=True)
class UpstreamAnswer:
    status: int
    content_type: str
    body: bytes


async def _read_all(content: aiohttp.StreamReader) -> bytes:
    """The whole answer (read() of a stream returns what has arrived so far), bounded."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.read(1 << 16):
        size += len(chunk)
        if size > _ANSWER_LIMIT:
            raise UpstreamError("the exchange's answer was too large")
        chunks.append(chunk)
    return b"".join(chunks)


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
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
            auto_decompress=True, skip_auto_headers=("User-Agent",))

    async def send(self, method: str, origin: str, raw_path_qs: str, headers: dict[str, str],
                   body: bytes) -> UpstreamAnswer:
        url = URL(origin + raw_path_qs, encoded=True)
        try:
            async with self._session.request(method, url, headers=headers,
                                             data=body if body else None,
                                             allow_redirects=False) as response:
                length = response.content_length
                if length is not None and length > _ANSWER_LIMIT:
                    raise UpstreamError("the exchange's answer was too large")
                # With a length, aiohttp reads exactly that much; without, read up to the limit.
                data = await (response.read() if length is not None
                              else _read_all(response.content))
                return UpstreamAnswer(response.status,
                                      response.headers.get("Content-Type", "application/json"),
                                      data)
        except aiohttp.ClientSSLError as exc:
            raise UpstreamError(f"the exchange's certificate was refused: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"the exchange could not be reached: "
                                f"{type(exc).__name__}") from None

    async def close(self) -> None:
        await self._session.close()

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

from . import http1
from .http1 import UpstreamError

__all__ = ["PASSED_HEADERS", "Upstream", "UpstreamAnswer", "UpstreamError", "tls_context"]

PASSED_HEADERS = ("content-type", "user-agent", "accept")
_ANSWER_LIMIT = 16 << 20  # an exchange answer larger than this is not a Kraken answer


@dataclass(frozen=True)
class UpstreamAnswer:
    status: int
    content_type: str
    body: bytes


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name verified, against `ca_file` if given, else the system's."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Upstream:
    """Kept-alive connections to the exchanges (`http1.Client`). Create and close inside
    the event loop."""

    def __init__(self, *, ca_file: Path | None, timeout: float) -> None:
        self._client = http1.Client(tls=tls_context(ca_file), timeout=timeout)

    async def send(self, method: str, origin: str, raw_path_qs: str, headers: dict[str, str],
                   body: bytes) -> UpstreamAnswer:
        response = await self._client.request(method, origin, raw_path_qs, headers, body)
        if response.content_length is not None and response.content_length > _ANSWER_LIMIT:
            response.close()
            raise UpstreamError("the exchange's answer was too large")
        data = await response.read(_ANSWER_LIMIT)
        return UpstreamAnswer(response.status,
                              response.header("content-type") or "application/json", data)

    async def close(self) -> None:
        await self._client.close()

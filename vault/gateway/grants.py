"""The gateway's side of the grant interface: resolve a grant, have the agent check and sign.

The agent does the work (grant_resolve, grant_sign: checking the bot's signature with the grant
secret, the grant's scope, taking the real key's nonce and signing, in one operation); this
module runs those blocking calls off the event loop on a few agent connections and turns the
agent's refusals into the gateway's `Reason`s. Resolutions are cached for at most a second
(grant_sign resolves again, so a revocation takes effect at once either way).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from ..errors import (
    AuthenticationError,
    GrantError,
    InvalidInputError,
    ScopeError,
    VaultError,
)
from .kraken_errors import Reason

if TYPE_CHECKING:
    from ..agent.client import AgentClient

__all__ = ["AgentGrants", "GrantAgent", "GrantRefused", "Resolved", "SignRequest", "Signed"]

_CACHE_SECONDS = 1.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class Resolved:
    grant: str
    entry: str
    exchange: str
    key_id: str


@dataclass(frozen=True)
class SignRequest:
    """What the bot sent, as grant_sign takes it."""

    grant_key: str
    path: str
    method: str
    body: str
    signature: str
    nonce_header: str
    content_type: str
    key_id: str


@dataclass(frozen=True)
class Signed:
    body: str
    headers: dict[str, str]
    entry: str
    grant: str
    nonce: int

    def __repr__(self) -> str:  # the headers carry the real key's signature
        return f"Signed(grant={self.grant!r}, entry={self.entry!r}, nonce={self.nonce})"


class GrantRefused(Exception):
    """The agent refused the request; `reason` says how the gateway answers."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason
        self.changed = detail == "changed"


class GrantAgent(Protocol):
    async def resolve(self, grant_key: str) -> Resolved: ...

    async def sign(self, request: SignRequest) -> Signed: ...

    def close(self) -> None: ...


def refused_as(exc: VaultError) -> GrantRefused:
    """The gateway's answer to an error the agent raised."""
    if isinstance(exc, ScopeError):
        return GrantRefused(Reason.PERMISSION)
    if isinstance(exc, GrantError) and exc.reason == "signature":
        return GrantRefused(Reason.INVALID_SIGNATURE)
    if isinstance(exc, GrantError):
        return GrantRefused(Reason.INVALID_KEY, exc.reason)
    if isinstance(exc, AuthenticationError):
        return GrantRefused(Reason.INVALID_KEY)
    if isinstance(exc, InvalidInputError):
        return GrantRefused(Reason.BAD_REQUEST)
    return GrantRefused(Reason.UNAVAILABLE)


class AgentGrants:
    """`GrantAgent` over real agent connections (one per worker thread)."""

    def __init__(self, connect: Callable[[], AgentClient], *, workers: int = 4,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agent")
        self._local = threading.local()
        self._clients: list[AgentClient] = []
        self._clients_lock = threading.Lock()
        self._cache: dict[str, tuple[float, Resolved]] = {}
        self._clock = clock

    def _client(self) -> AgentClient:
        client: AgentClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._connect()
            with self._clients_lock:
                self._clients.append(client)
        return client

    async def _run(self, call: Callable[[AgentClient], _T]) -> _T:
        def work() -> _T:
            return call(self._client())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work)
        except VaultError as exc:
            raise refused_as(exc) from None

    async def resolve(self, grant_key: str) -> Resolved:
        now = self._clock()
        cached = self._cache.get(grant_key)
        if cached is not None and now - cached[0] < _CACHE_SECONDS:
            return cached[1]
        target = await self._run(lambda c: c.grant_resolve(grant_key))
        resolved = Resolved(target.grant, target.entry, target.exchange, target.key_id)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[grant_key] = (now, resolved)
        return resolved

    def forget(self, grant_key: str) -> None:
        self._cache.pop(grant_key, None)

    async def sign(self, request: SignRequest) -> Signed:
        try:
            signed = await self._run(lambda c: c.grant_sign(
                request.grant_key, path=request.path, method=request.method, body=request.body,
                signature=request.signature, nonce_header=request.nonce_header,
                content_type=request.content_type, key_id=request.key_id))
        except GrantRefused:
            self.forget(request.grant_key)
            raise
        return Signed(signed.body, signed.headers, signed.entry, signed.grant, signed.nonce)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._clients_lock:
            for client in self._clients:
                client.close()
            self._clients.clear()

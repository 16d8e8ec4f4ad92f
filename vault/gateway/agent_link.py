"""The gateway's connections to the agent, on its own event loop.

The agent's wire format (length-prefixed JSON frames, `botvault.agent.protocol`) spoken by
an asyncio protocol, so an agent call costs one round trip on the unix socket and no hop to a
worker thread. A connection is opened with the same checks as `AgentClient`'s: the socket's
directory and file must be private and ours, and the process answering must run as our uid.
A few connections are kept, one call in flight on each, so requests on different keys do not
queue behind one another on the way to the agent.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..agent import hardening, socket_location
from ..agent.grant_desk import grant_key_digest
from ..agent.protocol import (
    MAX_FRAME,
    AgentError,
    ProtocolError,
    decode_payload,
    encode_frame,
    grant_signed,
    raise_for_error,
)
from ..errors import BusyError, InsecurePermissionsError, LockedError, VaultError
from .grants import GrantRefused, Signed, SignRequest, Verified, refused_as, verified_from
from .kraken_errors import Reason
from .one_step import vault_stamp

__all__ = ["AgentLink", "AsyncAgentGrants"]

_HEADER = struct.Struct(">I")


class _Answers(asyncio.Protocol):
    """One connection's incoming frames, for the one call in flight on it.

    A protocol rather than asyncio streams: an answer (nearly always one read) completes
    the call's future straight from `data_received`, without the StreamReader's buffer,
    waiter and wake-up in between (bench/bench_floor.py)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[bytes] | None = None
        self.pending = b""  # a frame's start, its rest not yet in
        self.lost = False
        self.stray = False  # bytes that answered no call: the connection is out of step
        self.expired = False  # the call's deadline passed: the connection was aborted

    def expire(self) -> None:
        self.expired = True
        if self.transport is not None:
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.stray = True
            return
        data = self.pending + data if self.pending else data
        if len(data) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(data)
            if length > MAX_FRAME:
                waiter.set_exception(ProtocolError("the agent's answer is over the frame limit"))
                return
            end = _HEADER.size + length
            if len(data) > end:
                waiter.set_exception(ProtocolError("the agent sent more than its answer"))
                return
            if len(data) == end:
                self.pending = b""
                waiter.set_result(data[_HEADER.size:])
                return
        self.pending = data

    def connection_lost(self, _exc: Exception | None) -> None:
        self.lost = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(asyncio.IncompleteReadError(self.pending, None))


class AgentLink:
    """One connection to the agent; reconnects once when the agent had closed it."""

    def __init__(self, socket_path: Path, *, timeout: float) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._answers: _Answers | None = None

    async def _open(self) -> _Answers:
        socket_location.check_socket_dir(self.socket_path)
        socket_location.check_socket_file(self.socket_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            await self._connect(sock)
            _refuse_foreign_peer(sock, self.socket_path)
            sock.setblocking(False)
            _, answers = await asyncio.get_running_loop().create_unix_connection(
                _Answers, sock=sock)
        except OSError as exc:
            sock.close()
            raise LockedError(f"cannot reach the agent: {exc.strerror or exc}",
                              hint=socket_location.LOCKED_HINT) from None
        except BaseException:
            sock.close()
            raise
        return answers

    async def _connect(self, sock: socket.socket) -> None:
        """A local socket connects at once, is refused, or finds the agent's queue full
        (EAGAIN: busy, tried again without blocking the loop; BusyError at the timeout)."""
        deadline = time.monotonic() + self.timeout
        with socket_location.unix_address(self.socket_path) as address:
            for attempt in range(1 << 16):
                try:
                    sock.connect(address)
                except BlockingIOError:
                    wait = socket_location.busy_wait(attempt)
                    if time.monotonic() + wait > deadline:
                        break
                    await asyncio.sleep(wait)
                else:
                    return
        raise socket_location.busy_error(self.socket_path, self.timeout)

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        frame = encode_frame({"op": op, **args})
        for attempt in (1, 2):
            answers = self._answers
            if answers is None or answers.lost or answers.stray:
                self.close()
                answers = self._answers = await self._open()
            transport = answers.transport
            assert transport is not None  # noqa: S101 - set when the connection was made
            loop = asyncio.get_running_loop()
            waiter = answers.waiter = loop.create_future()
            # One timer per call; when it fires the connection is aborted, which ends the call.
            timer = loop.call_later(self.timeout, answers.expire)
            try:
                transport.write(frame)
                payload = await waiter
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                self.close()
                if answers.expired:
                    raise AgentError("the agent did not answer properly") from None
                # Closed in the middle of an answer: the agent may have served the request.
                mid_frame = isinstance(exc, asyncio.IncompleteReadError) and bool(exc.partial)
                if mid_frame:
                    raise LockedError("the agent closed the connection",
                                      hint=socket_location.LOCKED_HINT) from None
                if attempt == 2:  # reconnected, and closed again: its connection limits
                    raise BusyError("the agent closed the connection again to admit other "
                                    "clients", hint=socket_location.BUSY_HINT) from None
                continue
            except ProtocolError:
                self.close()
                raise AgentError("the agent did not answer properly") from None
            except BaseException:
                self.close()  # cancelled mid-call: its answer would answer the next call
                raise
            finally:
                timer.cancel()
                answers.waiter = None
            try:
                answer = decode_payload(payload)
            except ProtocolError:
                self.close()
                raise AgentError("the agent did not answer properly") from None
            return raise_for_error(answer)
        raise AgentError("unreachable")  # the loop returns or raises

    def close(self) -> None:
        if self._answers is not None:
            if self._answers.transport is not None:
                self._answers.transport.close()
            self._answers = None


def _refuse_foreign_peer(sock: socket.socket, socket_path: Path) -> None:
    # A socket file can be replaced; the peer's credentials cannot be forged.
    if not hardening.peer_allowed(sock):
        raise InsecurePermissionsError(
            f"the process serving {socket_path} does not run as your user",
            hint="someone may be impersonating the agent; check that directory")


class _KnownGrants:
    """Short digests of every grant's api key, read from the agent again only when the
    vault file changed (a grant is added by saving it), so a key no grant has is refused
    without a round trip to the agent: a flood of made-up grant ids costs a `stat` each."""

    def __init__(self, vault_path: Path | None) -> None:
        self._path = vault_path
        self._stamp: tuple[int, ...] | None = None
        self._keys: frozenset[str] | None = None
        self._refresh: asyncio.Task[None] | None = None

    def _stat(self) -> tuple[int, ...] | None:
        return None if self._path is None else vault_stamp(self._path)

    async def knows(self, grant_key: str,
                    fetch: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
        digest = grant_key_digest(grant_key)
        if self._keys is not None and digest in self._keys:
            # Known: no stat on the hot path. The agent refuses it when it was revoked
            # since; only a key the list lacks (added since, or made up) looks again.
            return True
        stamp = self._stat()
        if stamp is None:
            return True  # cannot tell when it changes: the agent decides every time
        if stamp != self._stamp or self._keys is None:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.ensure_future(self._load(fetch, stamp))
            await asyncio.shield(self._refresh)
        return self._keys is None or digest in self._keys

    async def _load(self, fetch: Callable[[], Awaitable[dict[str, Any]]],
                    stamp: tuple[int, ...]) -> None:
        try:
            keys = (await fetch()).get("keys")
        except (VaultError, GrantRefused):
            keys = None
        if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
            self._keys, self._stamp = frozenset(keys), stamp
        else:
            self._keys, self._stamp = None, None  # ask the agent about every key


class AsyncAgentGrants:
    """`GrantAgent` over a few `AgentLink`s to the agent at `socket_path`."""

    def __init__(self, socket_path: Path, *, vault_path: Path | None = None, links: int = 4,
                 timeout: float = 10.0) -> None:
        self._links = [AgentLink(socket_path, timeout=timeout) for _ in range(links)]
        self._idle: asyncio.Queue[AgentLink] | None = None
        self._known = _KnownGrants(vault_path)
        self.calls = 0  # round trips to the agent (tests count them)

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        if self._idle is None:  # created on the loop that uses it
            self._idle = asyncio.Queue()
            for link in self._links:
                self._idle.put_nowait(link)
        link = await self._idle.get()
        self.calls += 1
        try:
            return await link.call(op, **args)
        except VaultError as exc:
            raise refused_as(exc) from None
        finally:
            self._idle.put_nowait(link)

    async def verify(self, request: SignRequest, *, exchange: str, window: float,
                     hold: float) -> Verified:
        if not await self._known.knows(request.grant_key, lambda: self._call("grant_keys")):
            raise GrantRefused(Reason.INVALID_KEY, "unknown")
        answer = await self._call(
            "grant_verify", grant_key=request.grant_key, path=request.path,
            method=request.method, body=request.body, signature=request.signature,
            nonce_header=request.nonce_header, content_type=request.content_type,
            exchange=exchange, window=window, hold=hold)
        return verified_from(answer)

    async def sign(self, request: SignRequest, verified: Verified) -> Signed:
        floor = {} if request.nonce_floor is None else {"nonce_floor": request.nonce_floor}
        answer = await self._call(
            "grant_sign", grant_key=request.grant_key, path=request.path,
            method=request.method, body=request.body, signature=request.signature,
            nonce_header=request.nonce_header, content_type=request.content_type,
            key_id=verified.key_id, ticket=verified.ticket, **floor,
            **({"aliases": request.aliases} if request.aliases is not None else {}))
        try:
            return grant_signed(answer)
        except AgentError as exc:
            raise refused_as(exc) from None

    async def check_and_sign(self, request: SignRequest, *, exchange: str, window: float
                             ) -> Signed:
        floor = {} if request.nonce_floor is None else {"nonce_floor": request.nonce_floor}
        answer = await self._call(
            "grant_sign", grant_key=request.grant_key, path=request.path,
            method=request.method, body=request.body, signature=request.signature,
            nonce_header=request.nonce_header, content_type=request.content_type,
            key_id=request.key_id, exchange=exchange, window=window, **floor)
        try:
            return grant_signed(answer)
        except AgentError as exc:
            raise refused_as(exc) from None

    async def check(self, grant_key: str) -> str:
        key = (await self._call("grant_resolve", grant_key=grant_key)).get("key_id")
        if not isinstance(key, str):
            raise GrantRefused(Reason.UNAVAILABLE, "the agent sent a malformed answer")
        return key

    async def learn(self, grant_key: str, nonce: int, order_ids: list[str | None]) -> None:
        await self._call("grant_learn", grant_key=grant_key, nonce=nonce, order_ids=order_ids)

    def close(self) -> None:
        for link in self._links:
            link.close()

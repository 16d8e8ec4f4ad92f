"""Who else uses a key: the interface the gateway takes a key's turn through.

A turn is one request's hold on a real key, from taking its nonce until the exchange's
answer: the request order, the nonce's floor, the rate counter. `LocalCoordinator` is this
machine alone (the key's `KeyOrder` lock, which in-process bots take too; the agent's nonce
counter; the gateway's `Governor`). `etcd_coord.EtcdCoordinator` shares the three with other
gateways through an etcd cluster. The app only says, per request:

    async with coordinator.hold(key_id, deadline) as turn:
        signed = <agent signs, nonce at least turn.nonce_floor>
        await turn.admit(api, endpoint, body)  # waits for the rate counter, or TurnTimeout;
                                               # True when it had to wait
        await turn.commit(signed.nonce)   # records the nonce (shared), or Unavailable
        <send, answer>
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from ..rate_limits import Governor
from ..request_lock import KeyOrder, RequestLockTimeout
from .kraken_errors import Api

__all__ = ["CoordinationUnavailable", "Coordinator", "LocalCoordinator", "Turn", "TurnTimeout",
           "wait_for_rate"]


class TurnTimeout(Exception):
    """The request would wait beyond its bound (answered `EAPI:Rate limit exceeded`)."""


class CoordinationUnavailable(Exception):
    """The shared state cannot be reached or was lost: the request is refused, not sent."""


class Turn(Protocol):
    nonce_floor: int | None  # the agent signs with a nonce at least this (None: its own)

    async def admit(self, api: Api, endpoint: str, post_data: str = "") -> bool: ...

    async def commit(self, nonce: int) -> None: ...


class Coordinator(Protocol):
    def hold(self, key_id: str, deadline: float) -> contextlib.AbstractAsyncContextManager[Turn]:
        ...

    def free(self, key_id: str) -> bool:
        """True when a request taking the key's turn now would wait behind no other request
        of this gateway (the app then checks and signs in one step, see app.py)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def wait_for_rate(admit: Callable[[], float], deadline: float) -> bool:
    """Sleep until `admit()` says 0 (it counts the send then); TurnTimeout when the wait
    would end after `deadline` (monotonic). True when it slept."""
    waited = False
    while (wait := admit()) > 0:
        if time.monotonic() + wait > deadline:
            raise TurnTimeout
        await asyncio.sleep(wait)
        waited = True
    return waited


class _LocalTurn:
    nonce_floor: int | None = None

    def __init__(self, governor: Governor, key_id: str, deadline: float) -> None:
        self._governor, self._key_id, self._deadline = governor, key_id, deadline

    async def admit(self, api: Api, endpoint: str, post_data: str = "") -> bool:
        return await wait_for_rate(
            lambda: self._governor.admit(api, self._key_id, endpoint, post_data),
            self._deadline)

    async def commit(self, nonce: int) -> None:  # noqa: ARG002 -- the Turn interface
        return None  # the agent's counter is the record


class LocalCoordinator:
    """This machine alone: `KeyOrder` (shared with in-process bots), the agent's nonces, and
    the gateway's `Governor`."""

    def __init__(self, vault_path: Path, governor: Governor) -> None:
        self.vault_path, self.governor = vault_path, governor
        self._orders: dict[str, KeyOrder] = {}  # one per real key: kept, not rebuilt each time

    @contextlib.asynccontextmanager
    async def hold(self, key_id: str, deadline: float) -> AsyncIterator[Turn]:
        order = self._orders.get(key_id)
        if order is None:
            order = self._orders[key_id] = KeyOrder.for_key_id(self.vault_path, key_id)
        try:
            async with order.hold_async(timeout=max(0.001, deadline - time.monotonic())):
                yield _LocalTurn(self.governor, key_id, deadline)
        except RequestLockTimeout:
            raise TurnTimeout from None

    def free(self, key_id: str) -> bool:
        order = self._orders.get(key_id)
        return order is not None and order.free_here()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

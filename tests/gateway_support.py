"""Running a gateway in a test: on a real loopback port, in a thread with its own event loop.

`FakeGrants` stands in for the agent's two grant operations in the unit tests of the
gateway's own logic (routing, refusals, pacing, limits, forwarding) only; the end-to-end tests
use the real agent. It keeps its grants in a dict instead of a vault, and its nonces in a
counter, but checks and signs with the agent's own functions (`botvault.agent.signing`): the
bot's signature with the grant secret, the scope of entry and grant, the real signature.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botvault.agent import signing
from botvault.entries import Entry
from botvault.errors import GrantError, VaultError
from botvault.gateway.app import Auditor, Gateway
from botvault.gateway.config import GatewayConfig
from botvault.gateway.grants import GrantAgent, Signed, SignRequest, Verified, refused_as
from botvault.gateway.server import serving
from botvault.grant_record import Grant
from botvault.nonces import key_id
from botvault.rate_limits import Governor
from botvault.scopes import General, Withdrawal
from botvault.secret import Secret


def b64secret() -> str:
    return base64.b64encode(os.urandom(64)).decode()


@dataclass
class FakeGrant:
    name: str
    entry: str
    exchange: str
    api_key: str  # the real key, as the exchange knows it
    real_secret: str
    secret: str = field(default_factory=b64secret)  # the grant's own
    general: General = General.FULL
    withdrawal: Withdrawal = Withdrawal.NONE
    revoked: bool = False

    def records(self, grant_key: str) -> tuple[Grant, Entry]:
        """The grant and its entry as the vault would hold them; the entry's scopes are
        the grant's general scope at least, so that the grant's own decide."""
        grant = Grant(bot=self.name, entry=self.entry, general=self.general,
                      withdrawal=self.withdrawal, api_key=grant_key,
                      api_secret=Secret(self.secret),
                      key_id=key_id(self.exchange, self.api_key))
        entry = Entry(name=self.entry, exchange=self.exchange, api_key=self.api_key,
                      api_secret=Secret(self.real_secret), general=General.FULL,
                      withdrawal=self.withdrawal)
        return grant, entry


class FakeGrants:
    """The agent's grant_verify / grant_sign, in process (unit tests only)."""

    def __init__(self) -> None:
        self.grants: dict[str, FakeGrant] = {}
        self.nonce = 1_000
        self.lock = threading.Lock()
        self.signed = 0
        self.verified = 0

    def add(self, grant_key: str, grant: FakeGrant) -> FakeGrant:
        self.grants[grant_key] = grant
        return grant

    def _find(self, grant_key: str) -> FakeGrant:
        grant = self.grants.get(grant_key)
        if grant is None:
            raise GrantError("unknown")
        if grant.revoked:
            raise GrantError("revoked")
        return grant

    async def verify(self, request: SignRequest, *, exchange: str, window: float,  # noqa: ARG002
                     hold: float) -> Verified:  # noqa: ARG002 -- the agent's replay checks
        try:
            if self._find(request.grant_key).exchange != exchange:
                raise GrantError("unknown")
            grant = self._check(request)
        except VaultError as exc:
            raise refused_as(exc) from None
        self.verified += 1
        return Verified(os.urandom(8).hex(), grant.name, grant.entry, grant.exchange,
                        key_id(grant.exchange, grant.api_key))

    async def learn(self, grant_key: str, nonce: int, order_ids: list[str | None]) -> None:
        pass  # this stand-in agent knows no policies

    async def check(self, grant_key: str) -> str:
        try:
            grant = self._find(grant_key)
        except VaultError as exc:
            raise refused_as(exc) from None
        return key_id(grant.exchange, grant.api_key)

    async def sign(self, request: SignRequest, verified: Verified) -> Signed:
        try:
            grant = self._find(request.grant_key)  # checked again: revoked since?
            if key_id(grant.exchange, grant.api_key) != verified.key_id:
                raise GrantError("changed")
            return self._sign(grant, request)
        except VaultError as exc:
            raise refused_as(exc) from None

    async def check_and_sign(self, request: SignRequest, *, exchange: str,
                             window: float) -> Signed:  # noqa: ARG002 -- replay checks
        try:
            found = self._find(request.grant_key)
            if found.exchange != exchange:
                raise GrantError("unknown")
            self._check(request)
            if key_id(found.exchange, found.api_key) != request.key_id:
                raise GrantError("changed")
            self.verified += 1
            return self._sign(found, request)
        except VaultError as exc:
            raise refused_as(exc) from None

    def _check(self, request: SignRequest) -> FakeGrant:
        """What the agent's grant_verify checks, through the very functions it calls: the
        bot's signature, the one scope check of entry and grant (the replay window aside)."""
        found = self._find(request.grant_key)
        grant, entry = found.records(request.grant_key)
        signing.check_grant_signature(grant, entry.exchange, request.path, request.body,
                                      request.signature, request.nonce_header,
                                      request.content_type)
        signing.authorise(entry, request.path, request.method, allow_withdrawal=False,
                          grant=grant)
        return found

    def _sign(self, found: FakeGrant, request: SignRequest) -> Signed:
        """What grant_sign does after the check: the real key's nonce and signature."""
        _, entry = found.records(request.grant_key)
        with self.lock:
            self.nonce += 1
            nonce = self.nonce
            self.signed += 1
        signed = signing.sign_for_grant(entry, request.path, request.body, nonce,
                                        request.content_type)
        return Signed(signed.body, signed.headers, found.entry, found.name, signed.nonce)

    def close(self) -> None:
        pass


class ListAuditor:
    """Audit records kept in a list, in the gateway's own loop (unit tests)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    async def start(self) -> None:
        pass

    async def sent(self, record: dict[str, Any]) -> None:
        self.lines.append(record)

    def record(self, record: dict[str, Any]) -> None:
        self.lines.append(record)

    async def stop(self) -> None:
        pass


@contextlib.contextmanager
def running_gateway(config: GatewayConfig, agent: GrantAgent, vault_path: Path, *,
                    audit: Auditor | None = None, governor: Governor | None = None
                    ) -> Iterator[str]:
    """A gateway serving on 127.0.0.1 (a free port); yields its URL."""
    gateway = Gateway(config, agent, vault_path, audit=audit, governor=governor)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    url: list[str] = []
    stop = asyncio.Event()

    async def serve() -> None:  # the real server's settings (botvault.gateway.server)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        async with serving(gateway, sock):
            url.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
            ready.set()
            await stop.wait()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)

"""etcd's v3 API through its own JSON gateway (`/v3/...`, etcd 3.4 and later), over aiohttp.

Why not a gRPC library (aetcd): the gateway needs six calls (range, txn, delete, lease
grant, keep-alive, revoke, authenticate), aiohttp's client does HTTP and TLS for them, and
aetcd would add grpcio and protobuf (tens of MB of native code). etcd serves this
API on the client port of every member, with the same TLS and auth as gRPC.

Every call goes to one member; a member that refuses the connection, times out or answers
an error is left for the next, until `timeout` for the whole call is spent: then
`EtcdUnavailable` (the caller refuses the request as not sent). A cluster that lost quorum
answers no linearizable read or write, so it ends here too, never in a fallback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from typing import Any

import aiohttp

from ..private import check_private_file
from .etcd_settings import EtcdSettings
from .timeouts import bounded

__all__ = ["EtcdClient", "EtcdUnavailable", "b64", "unb64"]

_ANSWER_LIMIT = 1 << 20


class EtcdUnavailable(Exception):
    """No member answered in time (down, partitioned, no quorum, or refused us)."""


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _context(settings: EtcdSettings) -> ssl.SSLContext | None:
    if not any(e.startswith("https://") for e in settings.endpoints):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.ca_file) if settings.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert_file is not None and settings.key_file is not None:
        check_private_file(settings.key_file, "the etcd client key")
        context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    return context


def _password(settings: EtcdSettings) -> str | None:
    if settings.password_file is None:
        return None
    check_private_file(settings.password_file, "the etcd password file")
    return settings.password_file.read_text(encoding="utf-8").rstrip("\n")


class EtcdClient:
    """Calls to an etcd cluster. Create, use and close on one event loop."""

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self._ssl = _context(settings)
        self._password = _password(settings)
        self._token: str | None = None
        self._member = 0  # the member that answered last: asked first next time
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the password or the token
        return f"EtcdClient({','.join(self.settings.endpoints)})"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False,
                                               limit=0, enable_cleanup_closed=True))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, path: str, doc: dict[str, Any], *,
                   timeout: float | None = None) -> dict[str, Any]:
        """POST `doc` to `/v3/<path>` on the first member that answers; its answer."""
        deadline = time.monotonic() + (timeout or self.settings.timeout)
        members = self.settings.endpoints
        last = "no member answered"
        tried = 0
        while (left := deadline - time.monotonic()) > 0:
            member = members[self._member % len(members)]
            try:
                # One member may hang (a leader just lost: etcd holds a proposal for up to
                # its request timeout): give each try a share, and ask the next member.
                answer = await bounded(self._post(member, path, doc),
                                       min(left, max(0.5, self.settings.timeout / 3)))
            except _AuthExpired:
                self._token = None
                continue
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, _MemberError) as exc:
                last = f"{member}: {exc if isinstance(exc, _MemberError) else type(exc).__name__}"
                self._member += 1
                tried += 1
                if tried % len(members) == 0:
                    await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                continue
            return answer
        raise EtcdUnavailable(f"etcd did not answer ({last})")

    async def _post(self, member: str, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self._password is not None and path != "auth/authenticate":
            if self._token is None:
                self._token = await self._authenticate(member)
            headers["Authorization"] = self._token
        async with self._http().post(f"{member}/v3/{path}", data=json.dumps(doc),
                                     headers=headers) as response:
            body = await response.content.read(_ANSWER_LIMIT + 1)
            if len(body) > _ANSWER_LIMIT:
                raise _MemberError("answer too large")
            try:
                answer = json.loads(body)
            except ValueError:
                raise _MemberError(f"HTTP {response.status}, not JSON") from None
            if not isinstance(answer, dict):
                raise _MemberError("answer is not an object")
            if "error" in answer or response.status != 200:
                message = str(answer.get("error") or answer.get("message") or response.status)
                if "auth token" in message:
                    raise _AuthExpired
                raise _MemberError(message[:200])
            return answer

    async def _authenticate(self, member: str) -> str:
        answer = await self._post(member, "auth/authenticate",
                                  {"name": self.settings.user, "password": self._password})
        token = answer.get("token")
        if not isinstance(token, str):
            raise _MemberError("authentication gave no token")
        return token


class _MemberError(Exception):
    """This member answered, but not with an answer: ask the next."""


class _AuthExpired(Exception):
    """The token expired (etcd's simple tokens do after idling): authenticate again."""

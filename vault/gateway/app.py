"""The gateway's request handling: route, read, check and sign, pace, order, forward, audit.

One private request, in order:

1. route it (`routing`); a path that is no Kraken path is refused;
2. read its body within the size and time limits (a slow or oversized request is refused on
   its own connection; every connection is its own task, so other bots go on);
3. resolve the grant (the agent; unknown, revoked, expired: refused);
4. take the real key's request order (`KeyOrder.for_key_id`, the lock the in-process
   integrations take too; requests queue for it in arrival order) and, holding it, have the
   agent check the bot's signature and the grant's scope and sign with the real key's next
   nonce;
5. wait, still holding it, until the key's rate counter takes the request (`governor`; a
   wait that would end beyond the bound from arrival is answered `EAPI:Rate limit exceeded`
   here), then send it and read the answer;
6. answer the bot with the exchange's status and body, and write one audit line.

Nothing the agent refused is sent. The handler never sees a secret.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from ..errors import VaultError
from ..request_lock import KeyOrder, RequestLockTimeout
from .config import GatewayConfig
from .forwarding import PASSED_HEADERS, Upstream, UpstreamError
from .governor import Governor
from .grants import GrantAgent, GrantRefused, Resolved, SignRequest
from .kraken_errors import Api, Reason, refusal
from .routing import Route, route
from .timeouts import bounded
from .trading import PolicyGuard

__all__ = ["Auditor", "Gateway", "build_app"]


class Auditor(Protocol):
    """Where audit records go (`audit_writer.AuditProcess`); `record` must not block."""

    async def start(self) -> None: ...

    def record(self, record: dict[str, Any]) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class _Outcome:
    """What the audit line says about one request."""

    route: Route | None
    started: float
    grant: str | None = None
    entry: str | None = None
    outcome: str = "forwarded"
    upstream_status: int | None = None


class _Refuse(Exception):
    def __init__(self, reason: Reason, detail: str = "", rule: str = "") -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.detail, self.rule = detail, rule  # a policy refusal's message and rule


class Gateway:
    """The state one gateway shares across requests."""

    def __init__(self, config: GatewayConfig, agent: GrantAgent, vault_path: Path, *,
                 audit: Auditor | None = None, governor: Governor | None = None) -> None:
        self.config = config
        self.agent = agent
        self.vault_path = vault_path
        self.audit = audit
        self.governor = governor or Governor(config.tier)
        self.upstream: Upstream | None = None
        self._orders: dict[str, KeyOrder] = {}
        self.policy = PolicyGuard()  # grants' trading policies: the gateway's part

    # -- lifecycle (aiohttp startup / cleanup) ---------------------------------------------

    async def start(self, _app: web.Application) -> None:
        self.upstream = Upstream(ca_file=self.config.ca_file,
                                 timeout=self.config.upstream_timeout)
        if self.audit is not None:
            await self.audit.start()

    async def stop(self, _app: web.Application) -> None:
        if self.audit is not None:
            await self.audit.stop()
        if self.upstream is not None:
            await self.upstream.close()

    def _record(self, outcome: _Outcome, method: str) -> None:
        if self.audit is None:
            return
        # Only these fields (botvault.audit.FIELDS): never a header, a body or a query string.
        self.audit.record({
            "time": time.time(), "grant": outcome.grant, "entry": outcome.entry,
            "exchange": outcome.route.exchange if outcome.route else None,
            "method": method[:16],
            "endpoint": outcome.route.endpoint[:200] if outcome.route else None,
            "outcome": outcome.outcome, "upstream_status": outcome.upstream_status,
            "duration_ms": round((time.monotonic() - outcome.started) * 1000, 3)})

    # -- requests --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        names = {k.lower() for k in request.headers}
        found = route(request.rel_url.raw_path, names)
        outcome = _Outcome(found, time.monotonic())
        try:
            response = await self._dispatch(request, found, outcome)
        except _Refuse as refused:
            response = self._refusal(found, refused.reason, outcome, refused.detail,
                                     refused.rule)
        except VaultError:
            # e.g. the requests directory became insecure: nothing was sent.
            response = self._refusal(found, Reason.UNAVAILABLE, outcome)
        except Exception as exc:
            # Its type only: a message or traceback could hold a request's contents.
            print(f"botvault: error: gateway fault: {type(exc).__name__}", file=sys.stderr)
            response = self._refusal(found, Reason.INTERNAL, outcome)
        self._record(outcome, request.method)
        return response

    @staticmethod
    def _refusal(found: Route | None, reason: Reason, outcome: _Outcome, detail: str = "",
                 rule: str = "") -> web.Response:
        answer = refusal(found.api if found else Api.SPOT, reason, detail)
        outcome.outcome = f"{reason.value}:{rule}" if rule else reason.value
        return web.Response(status=answer.status, body=answer.body,
                            content_type="application/json")

    async def _dispatch(self, request: web.Request, found: Route | None, outcome: _Outcome
                        ) -> web.StreamResponse:
        if found is None:
            raise _Refuse(Reason.UNKNOWN_PATH)
        body = await self._read_body(request)
        if found.private:
            return await self._private(request, found, body, outcome)
        return await self._forward(request, found, body, {}, outcome)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.config.max_body
        if request.content_length is not None and request.content_length > limit:
            raise _Refuse(Reason.TOO_LARGE)

        async def read() -> bytes:
            body = b""
            while len(body) <= limit:
                more = await request.content.read(limit + 1 - len(body))
                if not more:
                    break
                body += more
            return body

        if request.content.is_eof():  # all of it came with the head: no wait, no timer
            body = b""
            while len(body) <= limit and (more := request.content.read_nowait(
                    limit + 1 - len(body))):
                body += more
        else:
            try:
                body = await bounded(read(), self.config.body_timeout)
            except asyncio.TimeoutError:
                raise _Refuse(Reason.SLOW_CLIENT) from None
        if len(body) > limit:
            raise _Refuse(Reason.TOO_LARGE)
        return body

    async def _private(self, request: web.Request, found: Route, body: bytes,
                       outcome: _Outcome) -> web.StreamResponse:
        headers = request.headers
        if found.api is Api.SPOT:
            grant_key, signature, nonce_header = (
                headers.get("API-Key", ""), headers.get("API-Sign", ""), "")
        else:
            grant_key, signature, nonce_header = (
                headers.get("APIKey", ""), headers.get("Authent", ""), headers.get("Nonce", ""))
        if not grant_key or not signature:
            raise _Refuse(Reason.INVALID_KEY)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refuse(Reason.BAD_REQUEST) from None
        if found.api is Api.FUTURES and (request.method in ("GET", "DELETE") or not text):
            # Futures signs the query string of a GET or DELETE, and of a POST that carries
            # its parameters there with an empty body (ccxt does).
            text = request.rel_url.raw_query_string
        resolved = await self._resolve(grant_key, found)
        outcome.grant, outcome.entry = resolved.grant, resolved.entry
        content_type = "json" if "json" in headers.get("Content-Type", "") else "form"
        aliases = await self._policy_aliases(request, found, resolved, text, content_type)
        sign_request = SignRequest(grant_key, request.rel_url.raw_path, request.method, text,
                                   signature, nonce_header, content_type, resolved.key_id,
                                   aliases)
        order = self._orders.get(resolved.key_id)
        if order is None:  # one per real key of the vault: kept, not rebuilt per request
            order = self._orders[resolved.key_id] = KeyOrder.for_key_id(self.vault_path,
                                                                         resolved.key_id)
        bound = self.config.max_wait
        try:
            async with order.hold_async(timeout=bound):
                await self.policy.before_sign(grant_key)
                try:
                    signed = await self.agent.sign(sign_request)
                except GrantRefused as exc:
                    raise _Refuse(exc.reason, exc.detail if exc.rule else "",
                                  exc.rule) from None
                await self._within_rate(found, resolved.key_id, outcome.started + bound)
                out_body = signed.body.encode() if found.api is Api.SPOT else body
                response = await self._forward(request, found, out_body, signed.headers,
                                               outcome)
                if resolved.policy:
                    self.policy.after_forward(self.agent, grant_key, found.api,
                                              found.endpoint, signed.nonce, response)
                return response
        except RequestLockTimeout:
            raise _Refuse(Reason.RATE_LIMIT) from None

    async def _policy_aliases(self, request: web.Request, found: Route, resolved: Resolved,
                              text: str, content_type: str) -> dict[str, list[str]] | None:
        """The pair aliases the agent needs to judge a grant's policy (trading_gate
        enforces it); a request the agent could not judge whole is refused here."""
        if not resolved.policy or self.upstream is None:
            return None
        origin = self.config.spot_url if found.api is Api.SPOT else self.config.futures_url
        try:
            return await self.policy.aliases(
                self.upstream, origin, found.api, found.exchange, found.endpoint,
                resolved.policy, text, request.rel_url.raw_query_string, content_type)
        except ValueError as exc:
            raise _Refuse(Reason.POLICY, str(exc), "unreadable") from None

    async def _within_rate(self, found: Route, key_id: str, deadline: float) -> None:
        """Wait, holding the key's order, until the key's counter takes this request; refuse
        it when that would end after `deadline` (monotonic)."""
        while (wait := self.governor.admit(found.api, key_id, found.endpoint)) > 0:
            if time.monotonic() + wait > deadline:
                raise _Refuse(Reason.RATE_LIMIT)
            await asyncio.sleep(wait)

    async def _resolve(self, grant_key: str, found: Route) -> Resolved:
        try:
            resolved = await self.agent.resolve(grant_key)
        except GrantRefused as exc:
            raise _Refuse(exc.reason) from None
        if resolved.exchange != found.exchange:
            raise _Refuse(Reason.INVALID_KEY)  # a Spot grant at Futures: unknown there
        return resolved

    async def _forward(self, request: web.Request, found: Route, body: bytes,
                       auth: dict[str, str], outcome: _Outcome) -> web.StreamResponse:
        if self.upstream is None:
            raise RuntimeError("the gateway has not started")
        headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED_HEADERS}
        headers.update(auth)
        origin = self.config.spot_url if found.api is Api.SPOT else self.config.futures_url
        try:
            answer = await self.upstream.send(request.method, origin,
                                              request.rel_url.raw_path_qs, headers, body)
        except UpstreamError:
            raise _Refuse(Reason.UPSTREAM) from None
        outcome.upstream_status = answer.status
        response = web.Response(status=answer.status, body=answer.body)
        response.headers["Content-Type"] = answer.content_type
        return response


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application(client_max_size=gateway.config.max_body)
    app.on_startup.append(gateway.start)
    app.on_cleanup.append(gateway.stop)
    app.router.add_route("*", "/{tail:.*}", gateway.handle)
    return app

"""The gateway's request handling: route, read, check and sign, pace, order, forward, audit.

One private request, in order:

1. route it (`routing`); a path that is no Kraken path is refused;
2. its body comes read within the size and time limits (`http_server`: a slow or oversized
   request is refused on its own connection; every connection is its own task, so other
   bots go on);
3. have the agent check it (`grant_verify`: grant, signature, scope, replay window), without
   the key's turn;
4. take the real key's turn (`coordination`: its request order - `KeyOrder.for_key_id`, the
   lock the in-process integrations take too, and with `--etcd` the key's lock in etcd;
   requests queue in arrival order) and, holding it, have the agent check the grant again
   and sign with the real key's next nonce (at least the turn's `nonce_floor`). While the
   turn is free, a grant verified before takes steps 3 and 4 in one agent call
   (`one_step`);
5. wait, still holding it, until the key's rate counter takes the request (`rate_limits`; a
   wait that would end beyond the bound from arrival is answered `EAPI:Rate limit exceeded`
   here), record the nonce (`commit`; a shared state that cannot be reached refuses the
   request unsent), then send it and wait for the answer's status and headers (the turn is
   let go then: the exchange has taken the request);
6. stream the exchange's status and body to the bot, and write one audit line.

Nothing the agent refused is sent. The handler never sees a secret. When the agent says the
grant's key changed under it (a rotate between resolving and signing), the grant is resolved
again and the request tried once more, under the new key's order. A request that may have
reached the exchange but whose answer was lost is answered `OUTCOME_UNKNOWN` (504; see
kraken_errors), never as "not sent". A body over the limit is answered 413 and its connection
closed, without reading the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import VaultError
from ..exchanges.kraken import futures_post_data
from ..rate_limits import FileRateState, Governor
from .answers import NotRead, Whole, read_whole, stream
from .audit_book import AuditBook, Auditor, Outcome, RefusalPace
from .config import GatewayConfig
from .coordination import (
    CoordinationUnavailable,
    Coordinator,
    LocalCoordinator,
    Turn,
    TurnTimeout,
)
from .forwarding import PASSED_HEADERS, AnswerLost, NotSent, Upstream, UpstreamAnswer
from .grants import GrantAgent, GrantRefused, Signed, SignRequest, Verified
from .http_server import Problem, Request, Writer
from .kraken_errors import Api, Reason, refusal
from .one_step import OneStep
from .routing import Route, route
from .trading import PolicyGuard

__all__ = ["Auditor", "Gateway", "RefusalPace"]



class _Refuse(Exception):
    def __init__(self, reason: Reason, detail: str = "", rule: str = "") -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.detail, self.rule = detail, rule  # a policy refusal's message and rule


class _KeyChanged(Exception):
    """The agent says the grant now signs with another key than the one resolved."""


class Gateway:
    """The state one gateway shares across requests."""

    def __init__(self, config: GatewayConfig, agent: GrantAgent, vault_path: Path, *,
                 audit: Auditor | None = None, governor: Governor | None = None,
                 coordinator: Coordinator | None = None) -> None:
        self.config = config
        self.agent = agent
        self.vault_path = vault_path
        self.audit = audit
        # The key's counter is the machine's, shared with the in-process integrations.
        self.governor = governor or Governor(config.tier, state=FileRateState(vault_path))
        # Who else uses a key: this machine alone, or other gateways through etcd.
        self.coordinator = coordinator or LocalCoordinator(vault_path, self.governor)
        self.upstream: Upstream | None = None
        self.policy = PolicyGuard()  # grants' trading policies: the gateway's part
        self.one_step = OneStep(vault_path)  # grants whose request may be checked and signed
                                             # in one agent call (one_step.py)
        self._in_progress: dict[str, int] = {}  # grant api key -> its requests in progress
        self.book = AuditBook(audit, refuse_on_failure=config.audit_failure == "refuse")
        self._pace = RefusalPace()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.upstream = Upstream(ca_file=self.config.ca_file,
                                 timeout=self.config.upstream_timeout)
        await self.book.start()
        await self.coordinator.start()

    async def stop(self) -> None:
        await self.coordinator.stop()
        await self.book.stop()
        if self.upstream is not None:
            await self.upstream.close()

    # -- requests --------------------------------------------------------------------------

    async def handle(self, request: Request, writer: Writer) -> None:
        names = {k.lower() for k in request.headers}
        found = route(request.path, names)
        outcome = Outcome(found, time.monotonic())
        # A request without its whole body (too large, too slow): the rest is never read,
        # so its connection ends with the answer.
        close = request.problem is not None
        try:
            await self._dispatch(request, writer, found, outcome)
        except _Refuse as refused:
            # Paced before any answer: beyond RefusalPace's rate a refusal waits, and an
            # oversized body's sender waits with it (its unread rest held back by TCP, not
            # read), instead of reconnecting at once and taking the loop from granted bots.
            await self._pace.refused()
            self._refuse(writer, found, refused.reason, outcome, refused.detail,
                         refused.rule, close=close)
        except VaultError:
            # e.g. the requests directory became insecure: nothing was sent.
            self._refuse(writer, found, Reason.UNAVAILABLE, outcome, close=close)
        except Exception as exc:
            # Its type only: a message or traceback could hold a request's contents.
            print(f"botvault: error: gateway fault: {type(exc).__name__}", file=sys.stderr)
            self._refuse(writer, found, Reason.INTERNAL, outcome, close=close)
        self.book.account(outcome)

    @staticmethod
    def _refuse(writer: Writer, found: Route | None, reason: Reason, outcome: Outcome,
                detail: str = "", rule: str = "", *, close: bool = False) -> None:
        answer = refusal(found.api if found else Api.SPOT, reason, detail)
        outcome.outcome = f"{reason.value}:{rule}" if rule else reason.value
        writer.answer(answer.status, answer.body, [("Content-Type", answer.content_type)],
                      close=close)

    async def _dispatch(self, request: Request, writer: Writer, found: Route | None,
                        outcome: Outcome) -> None:
        if found is None:
            raise _Refuse(Reason.UNKNOWN_PATH)
        if request.problem is Problem.TOO_LARGE:
            raise _Refuse(Reason.TOO_LARGE)
        if request.problem is Problem.SLOW:
            raise _Refuse(Reason.SLOW_CLIENT)
        body = request.body
        if found.private:
            answer = await self._private(request, found, body, outcome)
        else:
            outcome.outcome = "public"  # unauthenticated: counted in the summaries
            answer = await self._send(request, found, body, {}, outcome)
        if isinstance(answer, Whole):  # read whole already (a policy grant's)
            writer.answer(answer.status, answer.body, answer.headers.items())
            return
        try:
            await stream(writer, answer, outcome)
        except NotRead:
            raise _Refuse(Reason.OUTCOME_UNKNOWN) from None

    async def _private(self, request: Request, found: Route, body: bytes,
                       outcome: Outcome) -> UpstreamAnswer | Whole:
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
        query = request.query
        if found.api is Api.FUTURES:
            text = futures_post_data(query, text)  # all of what is sent is signed
        elif query:
            # Spot signs the body only: a query string beside it would travel unsigned.
            raise _Refuse(Reason.BAD_REQUEST)
        content_type = "json" if "json" in headers.get("Content-Type", "") else "form"
        sign_request = SignRequest(grant_key, request.path, request.method, text,
                                   signature, nonce_header, content_type)
        with self._per_grant(grant_key):
            known = self.one_step.candidate(grant_key)
            if known is not None and self.coordinator.free(known.key_id):
                answer = await self._in_one_step(request, found, body, SignRequest(
                    grant_key, sign_request.path, sign_request.method, text, signature,
                    nonce_header, content_type, key_id=known.key_id), outcome)
                if answer is not None:
                    return answer
            stamp = self.one_step.stamp()
            verified = await self._verified(found, sign_request, outcome)
            self.one_step.remember(grant_key, verified, stamp)
            aliases = await self._policy_aliases(request, found, verified, text, content_type)
            sign_request = replace(sign_request, key_id=verified.key_id, aliases=aliases)
            for attempt in (1, 2):
                try:
                    return await self._signed_and_sent(request, found, body, sign_request,
                                                       verified, outcome)
                except _KeyChanged:
                    # Rotated since the check: the same request (its ticket unused), under
                    # the new key's order.
                    if attempt == 2:
                        raise _Refuse(Reason.INVALID_KEY) from None
                    try:
                        key = await self.agent.check(grant_key)
                    except GrantRefused as exc:
                        raise _Refuse(exc.reason) from None
                    verified = replace(verified, key_id=key)
                    sign_request = replace(sign_request, key_id=key)
        raise AssertionError("unreachable")  # the loop returns or raises

    @contextlib.contextmanager
    def _per_grant(self, grant_key: str) -> Iterator[None]:
        """Count the grant's requests in progress; refuse one beyond the cap (a flood under
        one grant id cannot take every slot)."""
        count = self._in_progress.get(grant_key, 0)
        if count >= self.config.max_per_grant:
            raise _Refuse(Reason.BUSY)
        self._in_progress[grant_key] = count + 1
        try:
            yield
        finally:
            left = self._in_progress[grant_key] - 1
            if left:
                self._in_progress[grant_key] = left
            else:
                del self._in_progress[grant_key]

    async def _verified(self, found: Route, sign_request: SignRequest, outcome: Outcome
                        ) -> Verified:
        """Cheap refusals first, without the key's order: unknown grant, signature, scope,
        replay window. Only a request that holds queues behind that key's other requests."""
        try:
            verified = await self.agent.verify(sign_request, exchange=found.exchange,
                                               window=self.config.replay_window,
                                               hold=self.config.max_wait + 60)
        except GrantRefused as exc:
            if exc.known is not None:
                outcome.grant, outcome.entry = exc.known
            raise _Refuse(exc.reason) from None
        outcome.grant, outcome.entry = verified.grant, verified.entry
        if verified.exchange != found.exchange:
            raise _Refuse(Reason.INVALID_KEY)  # a Spot grant at Futures: unknown there
        return verified

    async def _in_one_step(self, request: Request, found: Route, body: bytes,
                           sign_request: SignRequest, outcome: Outcome
                           ) -> UpstreamAnswer | Whole | None:
        """The key's turn was free (one_step): take it, have the agent check and sign in
        one call, make the audit line durable, send. None: the key changed, take the two
        steps."""
        grant_key = sign_request.grant_key
        with _turn_refusals():
            async with self.coordinator.hold(sign_request.key_id,
                                             outcome.started + self.config.max_wait) as turn:
                try:
                    signed = await self.agent.check_and_sign(
                        _with_floor(sign_request, turn), exchange=found.exchange,
                        window=self.config.replay_window)
                except GrantRefused as exc:
                    self.one_step.forget(grant_key)
                    if exc.changed:
                        return None
                    if exc.known is not None:
                        outcome.grant, outcome.entry = exc.known
                    raise _Refuse(exc.reason, exc.detail if exc.rule else "",
                                  exc.rule) from None
                outcome.grant, outcome.entry = signed.grant, signed.entry
                if not await self.book.sent(outcome, request.method):
                    raise _Refuse(Reason.AUDIT_FAILED)
                return await self._admitted_and_sent(request, found, body, turn, signed,
                                                     sign_request, outcome)

    async def _signed_and_sent(self, request: Request, found: Route, body: bytes,
                               sign_request: SignRequest, verified: Verified,
                               outcome: Outcome) -> UpstreamAnswer | Whole:
        """Holding the key's order: sign, pace, send; the order is let go once the answer's
        headers are in (a policy grant's answer is read whole first: its order ids go to
        the agent before the grant's next request). The audit line is made durable while
        the request waits for the order."""
        grant_key = sign_request.grant_key
        audit = asyncio.ensure_future(self.book.sent(outcome, request.method)) \
            if outcome.seq is None else None
        try:
            with _turn_refusals():
                async with self.coordinator.hold(sign_request.key_id,
                                                 outcome.started + self.config.max_wait) as turn:
                    if audit is not None and not await audit:
                        raise _Refuse(Reason.AUDIT_FAILED)
                    await self.policy.before_sign(grant_key)
                    # The agent checks the grant again when it signs, so a request that waited
                    # for its key while `grant revoke` returned is refused; one that then waits
                    # for the rate counter has it checked once more before it leaves.
                    try:
                        signed = await self.agent.sign(
                            _with_floor(sign_request, turn), verified)
                    except GrantRefused as exc:
                        if exc.changed:
                            raise _KeyChanged from None
                        raise _Refuse(exc.reason, exc.detail if exc.rule else "",
                                      exc.rule) from None
                    return await self._admitted_and_sent(request, found, body, turn, signed,
                                                         sign_request, outcome, verified.policy)
        finally:
            if audit is not None:
                with contextlib.suppress(BaseException):  # its line is written either way
                    await audit

    async def _admitted_and_sent(self, request: Request, found: Route, body: bytes,
                                 turn: Turn, signed: Signed, sign_request: SignRequest,
                                 outcome: Outcome, policy: dict[str, Any] | None = None
                                 ) -> UpstreamAnswer | Whole:
        """Signed, holding the key's turn: the rate wait last (what the counter admits
        leaves at once), the nonce recorded, sent."""
        grant_key, post_data = sign_request.grant_key, sign_request.body
        if await turn.admit(found.api, found.endpoint, post_data):
            try:
                await self.agent.check(grant_key)
            except GrantRefused as exc:
                raise _Refuse(exc.reason) from None
        await turn.commit(signed.nonce)
        out_body = signed.body.encode() if found.api is Api.SPOT else body
        answer = await self._send(request, found, out_body, signed.headers, outcome)
        if not policy:
            return answer
        try:
            response = await read_whole(answer)
        except NotRead:
            raise _Refuse(Reason.OUTCOME_UNKNOWN) from None
        self.policy.after_forward(self.agent, grant_key, found.api, found.endpoint,
                                  signed.nonce, response.body)
        return response

    async def _policy_aliases(self, request: Request, found: Route, verified: Verified,
                              text: str, content_type: str) -> dict[str, list[str]] | None:
        """The pair aliases the agent needs to judge a grant's policy (trading_gate
        enforces it); a request the agent could not judge whole is refused here."""
        if not verified.policy or self.upstream is None:
            return None
        origin = self.config.spot_url if found.api is Api.SPOT else self.config.futures_url
        try:
            return await self.policy.aliases(
                self.upstream, origin, found.api, found.exchange, found.endpoint,
                verified.policy, text, request.query, content_type)
        except ValueError as exc:
            raise _Refuse(Reason.POLICY, str(exc), "unreadable") from None


    async def _send(self, request: Request, found: Route, body: bytes,
                    auth: dict[str, str], outcome: Outcome) -> UpstreamAnswer:
        if self.upstream is None:
            raise RuntimeError("the gateway has not started")
        headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED_HEADERS}
        headers.update(auth)
        origin = self.config.spot_url if found.api is Api.SPOT else self.config.futures_url
        try:
            answer = await self.upstream.send(request.method, origin, request.path_qs,
                                              headers, body)
        except NotSent:
            raise _Refuse(Reason.UPSTREAM) from None
        except AnswerLost:
            raise _Refuse(Reason.OUTCOME_UNKNOWN) from None
        outcome.upstream_status = answer.status
        return answer


@contextlib.contextmanager
def _turn_refusals() -> Iterator[None]:
    """A key's turn that could not be had: a wait beyond the bound is the exchange's rate
    refusal; shared state out of reach refuses the request unsent, never a local fallback
    (the reason names no request content)."""
    try:
        yield
    except TurnTimeout:
        raise _Refuse(Reason.RATE_LIMIT) from None
    except CoordinationUnavailable as exc:
        print(f"botvault: warning: key coordination failed: {exc}", file=sys.stderr)
        raise _Refuse(Reason.UNAVAILABLE) from None


def _with_floor(sign_request: SignRequest, turn: Turn) -> SignRequest:
    # dataclasses.replace costs a few microseconds; only etcd's turns have a floor.
    if turn.nonce_floor is None:
        return sign_request
    return replace(sign_request, nonce_floor=turn.nonce_floor)

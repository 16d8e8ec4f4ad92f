"""The gateway operator's view of the agent: said once when it stops answering, and once again
when it answers again, instead of bots getting EService:Unavailable while the gateway's
terminal says nothing.

`WatchedAgent` wraps the real `GrantAgent`. It also remembers which grant each api key
was verified as (name, entry), so that while the agent is locked the refusal of a request
with a grant seen before is counted under that grant in the audit summary. The remembered
name never authorises anything: every request is still checked by the agent; with the agent
down, that fails and the bot is refused.
A grant never seen since the gateway started cannot be named while the agent is down (its api
key is random: only the agent knows whose it is).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .grants import GrantAgent, GrantRefused, Signed, SignRequest, Verified
from .kraken_errors import Reason

__all__ = ["WatchedAgent"]

_REMEMBERED = 4096  # grants whose names are kept for the audit lines (bounded)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class WatchedAgent:
    """A `GrantAgent` that tells the operator when the agent goes away and comes back."""

    def __init__(self, agent: GrantAgent, say: Callable[[str], None] = _say) -> None:
        self._agent = agent
        self._say = say
        self._down = False
        self._seen: dict[str, tuple[str, str]] = {}  # grant api key -> (grant, entry)

    @property
    def down(self) -> bool:
        return self._down

    async def verify(self, request: SignRequest, *, exchange: str, window: float,
                     hold: float) -> Verified:
        try:
            verified = await self._agent.verify(request, exchange=exchange, window=window,
                                                hold=hold)
        except GrantRefused as exc:
            self._note(exc)
            if exc.reason is Reason.UNAVAILABLE:
                exc.known = self._seen.get(request.grant_key)  # so its refusal is counted
            raise                                               # under its grant
        self._up()
        if len(self._seen) >= _REMEMBERED and request.grant_key not in self._seen:
            self._seen.clear()
        self._seen[request.grant_key] = (verified.grant, verified.entry)
        return verified

    async def sign(self, request: SignRequest, verified: Verified) -> Signed:
        try:
            signed = await self._agent.sign(request, verified)
        except GrantRefused as exc:
            self._note(exc)
            raise
        self._up()
        return signed

    async def check_and_sign(self, request: SignRequest, *, exchange: str, window: float
                             ) -> Signed:
        try:
            signed = await self._agent.check_and_sign(request, exchange=exchange,
                                                      window=window)
        except GrantRefused as exc:
            self._note(exc)
            if exc.reason is Reason.UNAVAILABLE:
                exc.known = self._seen.get(request.grant_key)
            raise
        self._up()
        return signed

    async def check(self, grant_key: str) -> str:
        try:
            key = await self._agent.check(grant_key)
        except GrantRefused as exc:
            self._note(exc)
            raise
        self._up()
        return key

    async def learn(self, grant_key: str, nonce: int, order_ids: list[str | None]) -> None:
        try:
            await self._agent.learn(grant_key, nonce, order_ids)
        except GrantRefused as exc:
            self._note(exc)
            raise
        self._up()

    def close(self) -> None:
        self._agent.close()

    def _note(self, exc: GrantRefused) -> None:
        if exc.reason is Reason.UNAVAILABLE:
            if not self._down:
                self._down = True
                self._say("botvault: warning: the agent is locked or unreachable: bots get "
                          "EService:Unavailable until it answers again (run: botvault unlock)")
        else:
            self._up()  # it answered, with a refusal: it is there

    def _up(self) -> None:
        if self._down:
            self._down = False
            self._say("botvault: the agent answers again; requests are served")

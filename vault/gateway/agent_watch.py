"""The gateway operator's view of the agent: said once when it stops answering, and once again
when it answers again, instead of bots getting EService:Unavailable while the gateway's
terminal says nothing.

`WatchedAgent` wraps the real `GrantAgent`. It also remembers which grant each api key
resolved to (name, entry), so that while the agent is locked a request with a grant seen
before is still refused by the agent's answer to grant_sign, with its audit line naming the
grant and entry. The remembered resolution never authorises anything: every request is still
signed, and so checked, by the agent; with the agent down, that fails and the bot is refused.
A grant never seen since the gateway started cannot be named while the agent is down (its api
key is random: only the agent knows whose it is).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .grants import GrantAgent, GrantRefused, Resolved, Signed, SignRequest
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
        self._seen: dict[str, Resolved] = {}

    @property
    def down(self) -> bool:
        return self._down

    async def resolve(self, grant_key: str) -> Resolved:
        try:
            resolved = await self._agent.resolve(grant_key)
        except GrantRefused as exc:
            self._note(exc)
            known = self._seen.get(grant_key) if exc.reason is Reason.UNAVAILABLE else None
            if known is None:
                raise
            return known  # so the refusal at grant_sign is audited under its grant
        self._up()
        if len(self._seen) >= _REMEMBERED and grant_key not in self._seen:
            self._seen.clear()
        self._seen[grant_key] = resolved
        return resolved

    async def sign(self, request: SignRequest) -> Signed:
        try:
            signed = await self._agent.sign(request)
        except GrantRefused as exc:
            self._note(exc)
            raise
        self._up()
        return signed

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

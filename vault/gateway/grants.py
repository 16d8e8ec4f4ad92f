"""The gateway's side of the grant interface: what it asks the agent, and what comes back.

The agent does the work (grant_resolve; grant_sign: checking the bot's signature with the
grant secret, the grant's scope, taking the real key's nonce and signing, in one operation).
`GrantAgent` is what the gateway needs of it (`agent_link.AsyncAgentGrants` is the real one);
`refused_as` turns the agent's refusals into the gateway's `Reason`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# The agent's answers, read as the client reads them.
from ..agent.protocol import GrantSigned as Signed
from ..agent.protocol import GrantTarget as Resolved
from ..errors import (
    AuthenticationError,
    GrantError,
    InvalidInputError,
    PolicyError,
    ScopeError,
    VaultError,
)
from .kraken_errors import Reason

__all__ = ["GrantAgent", "GrantRefused", "Resolved", "SignRequest", "Signed", "refused_as"]


@dataclass(frozen=True)
class SignRequest:
    """What the bot sent, as grant_sign takes it."""

    grant_key: str
    path: str
    method: str
    body: str = field(repr=False)  # may hold an order
    signature: str = field(repr=False)
    nonce_header: str
    content_type: str
    key_id: str
    # The pair aliases the gateway looked up for a grant with a policy (public data).
    aliases: dict[str, list[str]] | None = None
    nonce_floor: int | None = None  # the nonce must be at least this (etcd_coord)


class GrantRefused(Exception):
    """The agent refused the request; `reason` says how the gateway answers."""

    def __init__(self, reason: Reason, detail: str = "", *, rule: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason
        self.changed = detail == "changed"
        self.rule = rule  # a policy refusal's rule; `detail` then is its message
        self.detail = detail


class GrantAgent(Protocol):
    async def resolve(self, grant_key: str) -> Resolved: ...

    async def sign(self, request: SignRequest) -> Signed: ...

    async def learn(self, grant_key: str, nonce: int, order_ids: list[str | None]) -> None:
        """Tell the agent Kraken's ids for the orders a request it signed placed."""

    def close(self) -> None: ...


def refused_as(exc: VaultError) -> GrantRefused:  # noqa: PLR0911 - one answer per kind
    """The gateway's answer to an error the agent raised."""
    if isinstance(exc, PolicyError):
        return GrantRefused(Reason.POLICY, exc.message, rule=exc.rule)
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

"""The gateway's side of the grant interface: what it asks the agent, and what comes back.

The agent does the work (grant_resolve; grant_sign: checking the bot's signature with the
grant secret, the grant's scope, taking the real key's nonce and signing, in one operation).
`GrantAgent` is what the gateway needs of it (`agent_link.AsyncAgentGrants` is the real one);
`refused_as` turns the agent's refusals into the gateway's `Reason`s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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

__all__ = ["GrantAgent", "GrantRefused", "Resolved", "SignRequest", "Signed", "Verified",
           "refused_as", "verified_from"]


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
    key_id: str = ""  # the real key's identity, once `verify` named it
    # The pair aliases the gateway looked up for a grant with a policy (public data).
    aliases: dict[str, list[str]] | None = None
    nonce_floor: int | None = None  # the nonce must be at least this (etcd_coord)


@dataclass(frozen=True)
class Verified:
    """The agent's `grant_verify` answer: the request holds; `ticket` has it signed once."""

    ticket: str = field(repr=False)
    grant: str
    entry: str
    exchange: str
    key_id: str
    # The grant's trading policy as JSON (trading_policy.Policy.to_doc), or None.
    policy: dict[str, Any] | None = None


def verified_from(answer: Mapping[str, Any]) -> Verified:
    """Read a `grant_verify` answer; GrantRefused(UNAVAILABLE) when it is malformed."""
    fields = [answer.get(k) for k in ("ticket", "grant", "entry", "exchange", "key_id")]
    policy = answer.get("policy")
    if not all(isinstance(f, str) for f in fields) or not (
            policy is None or isinstance(policy, dict)):
        raise GrantRefused(Reason.UNAVAILABLE, "the agent sent a malformed answer")
    ticket, grant, entry, exchange, key = (str(f) for f in fields)
    return Verified(ticket, grant, entry, exchange, key, policy or None)


class GrantRefused(Exception):
    """The agent refused the request; `reason` says how the gateway answers."""

    def __init__(self, reason: Reason, detail: str = "", *, rule: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason
        self.changed = detail == "changed"
        self.rule = rule  # a policy refusal's rule; `detail` then is its message
        self.detail = detail
        self.known: tuple[str, str] | None = None  # (grant, entry) when known without the agent


class GrantAgent(Protocol):
    """Two steps per request: `verify` (cheap refusals first: unknown grant, signature,
    scope, replay window; no lock, no nonce) and `sign` (under the key's order, right
    before sending; the grant is checked again, so a revocation in between refuses it)."""

    async def verify(self, request: SignRequest, *, exchange: str, window: float,
                     hold: float) -> Verified: ...

    async def sign(self, request: SignRequest, verified: Verified) -> Signed: ...

    async def check_and_sign(self, request: SignRequest, *, exchange: str, window: float
                             ) -> Signed:
        """Both steps in one call, for `request.key_id`'s key while its turn is held
        (one_step): every check of `verify`, then `sign`'s."""

    async def check(self, grant_key: str) -> str:
        """The key id the grant signs with now; GrantRefused unless it is usable (revoked,
        expired, orphaned)."""

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
    if isinstance(exc, GrantError) and exc.reason in ("stale", "replayed"):
        return GrantRefused(Reason.INVALID_NONCE, exc.reason)
    if isinstance(exc, GrantError) and exc.reason == "busy":
        return GrantRefused(Reason.BUSY)
    if isinstance(exc, GrantError):
        return GrantRefused(Reason.INVALID_KEY, exc.reason)
    if isinstance(exc, AuthenticationError):
        return GrantRefused(Reason.INVALID_KEY)
    if isinstance(exc, InvalidInputError):
        return GrantRefused(Reason.BAD_REQUEST)
    return GrantRefused(Reason.UNAVAILABLE)

"""What a grant may do: its scopes within its entry's when issued, and whether it may
authenticate a request at all. Each signing request's endpoint is checked against the grant
and its entry together by `agent.signing.authorise`, the one scope check of a request."""

from __future__ import annotations

from .entries import Entry, check_live
from .errors import GrantError, InvalidInputError, ScopeError
from .grant_record import Grant
from .scopes import General, Withdrawal

__all__ = ["check_within", "usable"]


def check_within(entry: Entry, general: General, withdrawal: Withdrawal) -> None:
    """A grant's scopes are never above its entry's (ScopeError names the axis)."""
    from .exchanges import endpoints

    check_live(entry.name, entry.retired, hint="grant the current entry it was rotated into")
    if entry.exchange not in endpoints.EXCHANGES:
        raise InvalidInputError(f"{entry.name!r} is a {entry.exchange} key; grants are for "
                                "Kraken Spot and Futures keys")
    if general is General.NONE:
        raise InvalidInputError("a grant's general scope is read-only or full")
    if not entry.general.allows(general):
        raise ScopeError(f"{entry.name!r} has general scope {entry.general.value}; a grant "
                         f"cannot have {general.value}", hint="grant at most the entry's scope")
    if withdrawal is Withdrawal.FULL and entry.withdrawal is not Withdrawal.FULL:
        raise ScopeError(f"{entry.name!r} has withdrawal scope none; a grant cannot have full",
                         hint="grant at most the entry's scope")


def usable(grant: Grant | None, now: float) -> Grant:
    """`grant` if it may authenticate a request at `now`, else GrantError with the reason."""
    if grant is None:
        raise GrantError("unknown", "no grant has this api key")
    state = grant.state(now)
    if state != "active":
        raise GrantError(state, f"grant {grant.bot!r} is {state}",
                         hint="issue a new one with: botvault grant add")
    return grant



"""A grant's trading policy as the commands see it: change it (`grant edit`), and read the
day's spending against its budget (`grant show`). The policy itself is
`botvault.trading_policy`; the agent enforces it."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .errors import FormatError, NotFoundError
from .grant_record import GRANT_PREFIX, Grant
from .trading_policy.model import Policy, parse_policy

if TYPE_CHECKING:
    from .open_vault import Vault

__all__ = ["OPTION_NAMES", "add_with_policy", "edit_policy", "grant_details", "policy_summary",
           "spent_today"]

OPTION_NAMES = ("pairs", "order_types", "max_order_volume", "max_order_notional",
                "max_daily_notional", "reduce_only", "withdraw_keys", "max_withdraw_amount")


def add_with_policy(vault: Vault, bot: str, *, entry: str, general: str, withdrawal: str,
                    expires_in: float | None, options: Mapping[str, object],
                    require_nonce: bool = False) -> Grant:
    """`grant add`: a grant with the policy its options give (none given: no policy). The
    options are checked before anything is written."""
    from .grant_ops import add_grant

    policy = parse_policy(options)
    return add_grant(vault, bot, entry=entry, general=general, withdrawal=withdrawal,
                     expires_in=expires_in, policy=policy, require_nonce=require_nonce)


def policy_summary(policy: Policy) -> str:
    """One short line for `grant list` ("-" for none)."""
    return "; ".join(policy.describe()) or "-"


def grant_details(vault: Vault, bot: str) -> dict[str, Any]:
    """`grant show`: the grant's metadata, its policy, and today's spending when it has a
    daily budget."""
    from .grant_ops import get_grant, grant_document

    grant = get_grant(vault, bot)
    doc = grant_document(vault, bot)  # its state says orphaned when its key was removed
    if grant.policy.max_daily_notional is not None:
        day, spent = spent_today(vault, bot)
        doc["spent_today"] = {"day": day, "notional": format(spent, "f"),
                              "of": format(grant.policy.max_daily_notional, "f")}
    return doc


def edit_policy(vault: Vault, bot: str, options: Mapping[str, object]) -> Grant:
    """Narrow or widen `bot`'s policy: each option given replaces that limit (`none` lifts
    it); saved as every vault change is (a new generation, its backup)."""
    done: list[Grant] = []

    def op(records: dict[str, Any]) -> dict[str, Any]:
        name = GRANT_PREFIX + bot
        if name not in records:
            raise NotFoundError(f"no grant for {bot!r}", hint="see them with: botvault grant list")
        grant = vault.record_from(records, name)
        if not isinstance(grant, Grant):
            raise FormatError("a grant in the vault is malformed")
        changed = grant.with_changes(policy=parse_policy(options, base=grant.policy))
        records[name] = changed
        done.append(changed)
        return records

    vault.update_records(op)
    return done[0]


def spent_today(vault: Vault, bot: str) -> tuple[str, Decimal]:
    """(the UTC day, what `bot`'s orders were charged against its daily budget today)."""
    from .trading_budget import DailyBudget

    return DailyBudget(vault.path).spent(bot)

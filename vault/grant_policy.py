"""A grant's trading policy as the commands see it: change it (`grant edit`), and read the
day's spending against its budget (`grant show`). The policy itself is
`botvault.trading_policy`; the agent enforces it."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .errors import FormatError, NotFoundError
from .grants import GRANT_PREFIX, Grant
from .trading_policy.model import Policy, parse_policy

if TYPE_CHECKING:
    from .core import Vault

__all__ = ["OPTION_NAMES", "edit_policy", "new_policy", "policy_options", "spent_today"]

OPTION_NAMES = ("pairs", "order_types", "max_order_volume", "max_order_notional",
                "max_daily_notional", "reduce_only", "withdraw_keys", "max_withdraw_amount")


def policy_options(**options: Any) -> dict[str, Any]:
    """The policy options a command was given (None: not given)."""
    return {k: options.get(k) for k in OPTION_NAMES}


def new_policy(options: Mapping[str, object]) -> Policy:
    """The policy of a new grant from `grant add`'s options."""
    return parse_policy(options)


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
    from .trading_policy.budget import DailyBudget

    return DailyBudget(vault.path).spent(bot)

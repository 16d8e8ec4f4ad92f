"""Which keys may be handed to a caller: the `--max-scope` / `--allow-withdrawal` rules."""

from __future__ import annotations

from .entries import check_live
from .errors import ScopeError
from .scopes import General, Withdrawal

__all__ = ["check_handover"]


def check_handover(name: str, general: General | str, withdrawal: Withdrawal | str, *,
                   max_scope: General | None, allow_withdrawal: bool,
                   retired: bool = False) -> None:
    """Refuse a key that can do more than the caller asked for.

    A caller that asks for `read-only` must never receive a trading key, and a key that can
    withdraw is handed out only when the caller says so explicitly.
    """
    check_live(name, retired)
    has_general, has_withdrawal = General(general), Withdrawal(withdrawal)
    if max_scope is not None and not max_scope.allows(has_general):
        raise ScopeError(
            f"{name!r} has general scope {has_general.value}, more than --max-scope "
            f"{max_scope.value}",
            hint="use a key with less access for this bot, or raise --max-scope")
    if has_withdrawal is Withdrawal.FULL and not allow_withdrawal:
        raise ScopeError(
            f"{name!r} can withdraw funds; refusing to hand it out",
            hint="pass --allow-withdrawal if this bot really needs withdrawals, or create a "
                 "key without withdrawal access for it")

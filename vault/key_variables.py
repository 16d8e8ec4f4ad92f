"""The variables `botvault run` and `env` hand a bot: each key's pair under its names,
after the scope checks, with no variable set twice."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scopes import General
    from .session import Session

__all__ = ["key_variables"]


def key_variables(session: Session, names: list[str], *, max_scope: General | None,
                  allow_withdrawal: bool, preset: str | None) -> list[tuple[str, str]]:
    """(variable, value) pairs for the named keys, from the agent when it serves secrets.

    Refused (ScopeError) for a retired key, one above `max_scope` or one that can withdraw
    without `allow_withdrawal`; InvalidInputError when two keys would set one variable.
    Nothing is returned unless every key passes."""
    from .errors import InvalidInputError
    from .handover import var_names
    from .handover_policy import check_handover

    pairs: list[tuple[str, str]] = []
    for name, cred in zip(names, session.credentials(names), strict=True):
        check_handover(name, cred.general, cred.withdrawal, max_scope=max_scope,
                       allow_withdrawal=allow_withdrawal, retired=cred.retired)
        key_var, secret_var = var_names(cred.exchange, name, env_key=cred.env_key,
                                        env_secret=cred.env_secret, preset=preset)
        pairs += [(key_var, cred.api_key), (secret_var, cred.api_secret.reveal())]
    seen = [var for var, _ in pairs]
    clash = sorted({v for v in seen if seen.count(v) > 1})
    if clash:
        raise InvalidInputError(f"two keys would set the same variable: {', '.join(clash)}",
                                hint="set distinct names with botvault edit NAME --env-key "
                                     "VAR --env-secret VAR")
    return pairs

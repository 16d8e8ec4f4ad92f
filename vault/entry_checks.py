"""An entry's fields checked on their own, before anything is asked for or read: the rules
`new_entry` and `Vault.edit` apply when they store them, so a command can refuse bad input
before the passphrase prompt rather than after it."""

from __future__ import annotations

from collections.abc import Mapping

from .entries import MAX_NOTE, check_name, check_text
from .errors import InvalidInputError

__all__ = ["check_entry_changes", "check_new_entry"]


def check_new_entry(name: str, *, exchange: str, api_key: str | None = None,
                    account: str | None = None, note: str = "") -> None:
    """What `new_entry` would refuse among the fields known before the secret is read."""
    from .exchanges.validation import validate_api_key

    check_name(name)
    if api_key is not None:
        validate_api_key(exchange, api_key, warn=False)
    if account:
        check_text("account label", account)
    check_text("note", note, MAX_NOTE)


def check_entry_changes(name: str, changes: Mapping[str, str | None], *,
                        replaces_secret: bool = False) -> None:
    """What `Vault.edit(name, **changes)` would refuse without reading the vault; None
    leaves a field alone, so a call that changes nothing (no field, no new secret) is
    refused too."""
    from .handover import validate_var_name

    if all(value is None for value in changes.values()) and not replaces_secret:
        raise InvalidInputError("nothing to change", hint="see: botvault edit --help")
    check_name(name)
    for var in (changes.get("env_key"), changes.get("env_secret")):
        if var:
            validate_var_name(var)
    account, note = changes.get("account"), changes.get("note")
    if account:
        check_text("account label", account)
    if note is not None:
        check_text("note", note, MAX_NOTE)

"""Replace a stored secret in place: the fix for a secret stored wrong (cut, mistyped).

Not `rotate`: rotate is for a new key pair from the exchange and keeps the old pair as a
retired entry to revoke. A secret stored wrong was never valid for its api key, so nothing of
it is kept as an entry: the api key, name, scopes, labels, grants (they name the entry),
variable names and the nonce counter (keyed by the api key) all stay, only the secret changes.
The previous vault generations keep the old bytes until they rotate out, as for every save.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .entry_rules import cleaned_secret
from .errors import InvalidInputError, ScopeError
from .secret import Secret

if TYPE_CHECKING:
    from .entries import Entry
    from .open_vault import Vault
    from .save_engine import Records

__all__ = ["replace_secret"]


def replace_secret(vault: Vault, name: str, api_secret: str | Secret) -> Entry:
    """Store `api_secret` as `name`'s secret, checked as `add` checks it; everything else of
    the entry is kept. Warns (VaultWarning) about whitespace removed from a wrapped paste."""
    current = vault.get(name)
    # The rule `add` and `rotate` apply: checked, a wrap removed with a warning.
    new_secret = Secret(cleaned_secret(current.exchange, api_secret))

    def op(records: Records) -> Records:
        # The entry as saved now, under the save lock: an edit made meanwhile is kept.
        entry = vault.entry_from(records, name)
        if entry.retired:
            raise ScopeError(f"{name!r} is a retired key pair and is never used again",
                             hint="fix the secret of the entry in use")
        if entry.api_secret == new_secret:
            raise InvalidInputError(f"{name!r} holds this secret already; nothing changed",
                                    hint="a new key pair from the exchange goes in with "
                                         f"`botvault rotate {name}`")
        records[name] = entry.with_changes(api_secret=new_secret)
        return records

    vault.update_records(op)
    return vault.get(name)

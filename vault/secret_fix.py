"""Replace a stored secret in place: the fix for a secret stored wrong (cut, mistyped).

Not `rotate`: rotate is for a new key pair from the exchange and keeps the old pair as a
retired entry to revoke. A secret stored wrong was never valid for its api key, so nothing of
it is kept as an entry: the api key, name, scopes, labels, grants (they name the entry),
variable names and the nonce counter (keyed by the api key) all stay, only the secret changes.
The previous vault generations keep the old bytes until they rotate out, as for every save.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from .errors import InvalidInputError, ScopeError, VaultWarning
from .exchanges.validation import clean_secret
from .secret import Secret

if TYPE_CHECKING:
    from .core import Vault
    from .entries import Entry
    from .saving import Records

__all__ = ["replace_secret"]


def replace_secret(vault: Vault, name: str, api_secret: str | Secret) -> Entry:
    """Store `api_secret` as `name`'s secret, checked as `add` checks it; everything else of
    the entry is kept. Warns (VaultWarning) about whitespace removed from a wrapped paste."""
    current = vault.get(name)
    raw = api_secret.reveal() if isinstance(api_secret, Secret) else api_secret
    secret, removed = clean_secret(current.exchange, raw)
    if removed:
        warnings.warn(f"removed {removed} whitespace character{'s' if removed != 1 else ''} "
                      "from the secret (a line-wrap artefact of copying)", VaultWarning,
                      stacklevel=2)
    new_secret = Secret(secret)

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

"""Where a new vault may be created: checked before the passphrase is asked for and Argon2id
calibrated (`Vault.create` checks again under the lock, where it writes)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import AlreadyExistsError
from .vault_path import resolve_vault_path

__all__ = ["check_new_vault_path"]


def check_new_vault_path(path: str | os.PathLike[str] | None) -> Path:
    """The resolved path, or AlreadyExistsError when anything (a vault, a link) is there."""
    target = resolve_vault_path(path)
    if os.path.lexists(target):
        raise AlreadyExistsError(f"a vault exists already at {target}; it was left as it is",
                                 hint="to make a second vault, pass --vault OTHER_PATH; to "
                                      "use this one, run any command (e.g. botvault list)")
    return target

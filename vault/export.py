"""Encrypted exports: a self-contained vault under a passphrase of its own."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .core import Vault
from .crypto import KdfParams
from .entries import Entry
from .errors import NotFoundError
from .store import lock_path

__all__ = ["export_entries", "read_export"]


def export_entries(source: Vault, target: str | os.PathLike[str], passphrase: str | bytes, *,
                   only: Sequence[str] | None = None, kdf: KdfParams | None = None) -> Path:
    """Write the entries (all, or `only` these names) to a new vault file at `target`.

    The export is a complete vault with its own data key, vault id and passphrase, so it
    can be opened, checked and imported anywhere, and holds no plaintext. The grants on the
    exported entries go with them (grants.copy_grants).
    """
    from .grants import copy_grants

    chosen = _select(source, only)
    with Vault.create(target, passphrase, kdf=kdf or source.kdf) as out:
        out.import_entries(chosen)
        copy_grants(source, out, [e.name for e in chosen])
        path = out.path
    lock_path(path).unlink(missing_ok=True)  # the lock belongs to a live vault, not a copy
    return path


def read_export(path: str | os.PathLike[str], passphrase: str | bytes) -> list[Entry]:
    """Entries of an export, verified like any vault (tampering is AuthenticationError)."""
    with Vault.open(path, passphrase) as exported:
        return exported.list(retired=True)


def _select(source: Vault, only: Sequence[str] | None) -> list[Entry]:
    if not only:
        return source.list(retired=True)
    missing = [n for n in only if n not in source]
    if missing:
        raise NotFoundError(f"no entry named {', '.join(map(repr, missing))}",
                            hint="see the names with: botvault list --all")
    return [source.get(n) for n in only]

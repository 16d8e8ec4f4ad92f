"""Encrypted exports: a self-contained vault under a passphrase of its own.

An export is built in memory and written with one atomic create (temp file, fsync, link,
directory fsync): the file appears whole or not at all, nothing is left beside it (no lock,
no backups directory), and a failure (a full disk, say) leaves no file that would block a
retry. An existing file is never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from . import codec, crypto, fileformat, vault_file
from .codec import Record
from .crypto import KdfParams
from .entries import Entry
from .errors import AlreadyExistsError, InvalidInputError, NotFoundError
from .open_vault import Vault
from .vault_path import resolve_vault_path

__all__ = ["check_export_target", "export_entries", "read_export"]


def check_export_target(target: str | os.PathLike[str]) -> Path:
    """The export's path, refused (exit 4) when something is there already; call it before
    asking for any passphrase."""
    path = resolve_vault_path(target)
    if os.path.lexists(path):
        raise AlreadyExistsError(f"{path} exists already; an export never overwrites a file",
                                 hint="name a new file, or move the old one away first")
    return path


def export_entries(source: Vault, target: str | os.PathLike[str], passphrase: str | bytes, *,
                   only: Sequence[str] | None = None, kdf: KdfParams | None = None) -> Path:
    """Write the entries (all, or `only` these names) to a new vault file at `target`.

    The export is a complete vault with its own data key, vault id and passphrase, so it
    can be opened, checked and imported anywhere, and holds no plaintext. The grants on the
    exported entries go with them (grant_ops.grants_for_export).
    """
    from .grant_ops import grants_for_export

    chosen = _select(source, only)
    path = check_export_target(target)
    params = kdf or source.kdf
    crypto.check_params(params, error=InvalidInputError)
    data_key = os.urandom(crypto.KEY_SIZE)
    header = codec.new_header(crypto.encode_passphrase(passphrase), data_key, params)
    keys = codec.Keys.from_data_key(data_key)
    sealer = crypto.Sealer(keys.entry)
    # The grants on the exported entries go with them, as they are (revoked ones stay so).
    copies: list[Record] = [e.with_changes(entry_id=os.urandom(fileformat.ID_SIZE))
                            for e in chosen]
    copies += grants_for_export(source, [e.name for e in chosen])
    with codec.gc_paused():
        records = [codec.seal_entry(sealer, header.vault_id, record) for record in copies]
    data = codec.encode(header.with_generation(1), records, keys)
    vault_file.ensure_private_dir(path.parent)
    try:
        vault_file.atomic_write(path, data, verify=codec.equal_to(data), backup_as=None,
                           create=True)
    except FileExistsError:
        raise AlreadyExistsError(f"{path} appeared while the export was written; it was "
                                 "left alone", hint="name a new file") from None
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

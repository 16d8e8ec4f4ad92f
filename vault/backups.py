"""A vault's automatic backups as the user sees them: listing them, verified, and restoring one.

The files themselves (where they live, the rotation at each save) are vault_file's; this
module reads them under the open vault's key and saves a restored one as a new generation.
"""

from __future__ import annotations

from pathlib import Path

from . import codec, fileformat, vault_file
from .save_engine import SavedFile

__all__ = ["Backup", "list_verified", "restore"]


class Backup:
    """One automatic backup: its generation and file."""

    def __init__(self, generation: int, path: Path, entries: int,
                 names: tuple[str, ...] = ()) -> None:
        self.generation, self.path, self.entries = generation, path, entries
        self.names = names  # the entries it holds, sorted (for `restore` to show)

    def __repr__(self) -> str:
        return f"Backup(generation={self.generation}, entries={self.entries})"


def list_verified(file: SavedFile) -> list[Backup]:
    """The automatic backups, newest first, each verified under this vault's key."""
    found = []
    for generation, path in vault_file.list_backups(file.path):
        parsed = fileformat.parse(vault_file.read_private(path))
        held = codec.decode(parsed, file.require_keys())
        found.append(Backup(generation, path, len(parsed.records), tuple(sorted(held))))
    return found


def restore(file: SavedFile, generation: int) -> None:
    """Make backup `generation` the current state, saved as a new generation above every
    one seen on this machine. A rolled-back file's own generation (opened with
    `allow_rollback`) is accepted too: that keeps the rolled-back file on purpose.

    Grants are the exception: none comes back more usable than it is now (see
    grant_ops.no_resurrection)."""
    from .grant_ops import no_resurrection

    with vault_file.lock(file.path):
        file.refresh()
        keys = file.require_keys()
        if generation == file.header.generation < file.floor:
            file.write_locked(dict(file.entries), reuse=dict(file.records))
            return
        backup = vault_file.backup_path(file.path, generation)
        parsed = fileformat.parse(vault_file.read_private(backup))
        entries = codec.decode(parsed, keys)
        reuse = dict(zip(entries, parsed.records, strict=True))
        for name, record in no_resurrection(file.entries, entries).items():
            entries[name] = record
            reuse.pop(name)  # sealed anew
        file.write_locked(entries, reuse=reuse)

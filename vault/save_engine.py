"""The save engine: the vault file as this process last read or wrote it, and the one way to
save a new generation of it.

`Vault` (open_vault.py) decides what the entries become; this module decides how they reach the
disk: adopt what another process saved first (`refresh`), seal only what changed and keep
the sealed records of the rest, write atomically with the backup rotation, and always go
above every generation seen on this machine (the floor).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import codec, crypto, fileformat, seen_generations, vault_file
from .errors import ClosedError, ConflictError, KeyChangedError, RollbackError
from .fileformat import Header, RawRecord

__all__ = ["Records", "SavedFile", "read_checked", "read_file"]

Records = dict[str, codec.Slot]


class SavedFile:
    """One vault file's last known state (header, records by name, sealed records) and the
    keys that seal them. Not thread-safe; one per open `Vault`."""

    def __init__(self, path: Path, keys: codec.Keys, parsed: fileformat.ParsedFile,
                 entries: Records, *, seen: int = 0) -> None:
        self.path = path
        self._where = os.fspath(path)  # for reload's stat (a Path converts on every call)
        self.keys: codec.Keys | None = keys
        self.header = parsed.header
        self.entries = entries
        self.records = dict(zip(entries, parsed.records, strict=True))
        self.sealer = crypto.Sealer(keys.entry, seen=(r.nonce for r in parsed.records))
        self._seen: tuple[int, ...] | None = None  # the file as last checked by reload()
        # The highest generation seen on this machine: the next save goes above it (it is
        # above the file's own only when a rolled-back file was opened on purpose).
        self.floor = max(seen, parsed.header.generation)
        seen_generations.note(path, parsed.header.vault_id, parsed.header.generation)

    def close(self) -> None:
        self.keys = None
        self.entries = {}
        self.records = {}

    def require_keys(self) -> codec.Keys:
        if self.keys is None:
            raise ClosedError("the vault is closed")
        return self.keys

    # -- reading -------------------------------------------------------------------------

    def reload(self) -> bool:
        """Adopt a newer generation saved by another process; True when anything changed.

        Needs no lock: saves replace the file atomically, so a read sees one whole file.
        """
        try:  # _file_signature, inlined: the agent calls this before every request
            st = os.stat(self._where, follow_symlinks=False)
        except OSError:
            seen = None
        else:
            seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if seen == self._seen:
                return False  # one stat, not a read
        before = self.header
        self.refresh()
        self._seen = seen
        return self.header != before

    def refresh(self) -> None:
        """Adopt what another process saved since we loaded, so no update is lost.

        Generations only grow under the lock, so an unchanged header means an unchanged file.
        """
        if vault_file.read_head(self.path, fileformat.HEADER_SIZE) == self.header.pack(
                len(self.records)):
            return
        parsed, _ = read_checked(self.path)
        new = parsed.header
        if new.vault_id != self.header.vault_id:
            raise ConflictError(f"the vault at {self.path} was replaced by a different vault",
                                hint="open it again")
        if new.generation < self.header.generation:
            # Never adopted silently, whatever the record of generations says.
            raise RollbackError(
                f"the vault at {self.path} went back from generation "
                f"{self.header.generation} to generation {new.generation}",
                hint=f"to go back to it on purpose, run: botvault restore {new.generation}")
        if _wrap_of(new) != _wrap_of(self.header):
            raise KeyChangedError(
                f"the passphrase of the vault at {self.path} was changed by another process "
                "(it has a new data key)", hint="open it again with the new passphrase")
        known = {self.records[n].nonce: (n, e) for n, e in self.entries.items()}
        self.entries = codec.decode(parsed, self.require_keys(), known=known)
        self.records = dict(zip(self.entries, parsed.records, strict=True))
        self.header = parsed.header
        for record in parsed.records:
            self.sealer.note(record.nonce)
        self.floor = max(self.floor, new.generation)
        seen_generations.note(self.path, new.vault_id, new.generation)

    # -- writing -------------------------------------------------------------------------

    def apply(self, op: Callable[[Records], Records]) -> None:
        """Save what `op` makes of the records as they are in the file now, under the lock."""
        with vault_file.lock(self.path):
            self.refresh()
            self.write_locked(op(dict(self.entries)))

    def write_locked(self, entries: Records, *, header: Header | None = None,
                     reuse: dict[str, RawRecord] | None = None) -> None:
        """Save `entries` as the next generation; the caller holds the lock. A record is
        sealed anew unless it is in `reuse` or is the very slot loaded (unchanged)."""
        keys = self.require_keys()
        base = header or self.header
        records: list[RawRecord] = []
        changed: list[RawRecord] = []
        with codec.gc_paused():
            for name, entry in entries.items():
                kept = _kept_record(name, entry, reuse, self.entries, self.records)
                if kept is None:
                    kept = codec.seal_entry(self.sealer, base.vault_id,
                                            codec.materialize_record(name, entry))
                    changed.append(kept)
                records.append(kept)
        new_header = base.with_generation(self.next_generation())
        data = codec.encode(new_header, records, keys)
        vault_file.atomic_write(self.path, data, verify=codec.save_verifier(data, changed, keys),
                           backup_as=self.header.generation)
        self.saved(new_header, entries, records)

    def next_generation(self) -> int:
        return max(self.header.generation, self.floor) + 1

    def saved(self, header: Header, entries: Records, records: list[RawRecord]) -> None:
        """Adopt a generation this process has just written."""
        self.header, self.entries = header, entries
        self.records = dict(zip(entries, records, strict=True))
        self.floor = max(self.floor, header.generation)
        seen_generations.note(self.path, header.vault_id, header.generation)

    def rekeyed(self, keys: codec.Keys, sealer: crypto.Sealer, header: Header, data: bytes,
                before: tuple[RawRecord, ...], after: list[RawRecord]) -> None:
        """Adopt the file just written under new keys without decrypting it again: `before`
        are its records under the old keys, `after` the same records re-sealed."""
        name_of = {record: name for name, record in self.records.items()}
        if all(record in name_of for record in before):
            entries = {name_of[record]: self.entries[name_of[record]] for record in before}
        else:  # a record that is not an entry (an internal one): index the file anew
            entries = codec.decode(fileformat.parse(data), keys)
        self.keys, self.sealer = keys, sealer
        self.saved(header, entries, after)


def read_checked(path: Path, *, allow_rollback: bool = False
                 ) -> tuple[fileformat.ParsedFile, int]:
    """The file, refused when older than a generation already seen here; and that one.

    A save replaces the file before it raises the record, so a record above the file just
    read can also mean a save landed in between: the file is read once more to tell.
    """
    parsed = read_file(path)
    header = parsed.header
    try:
        return parsed, seen_generations.check(path, header.vault_id, header.generation,
                                         allow_rollback=allow_rollback)
    except RollbackError:
        parsed = read_file(path)
        header = parsed.header
        return parsed, seen_generations.check(path, header.vault_id, header.generation,
                                         allow_rollback=allow_rollback)


def read_file(path: Path) -> fileformat.ParsedFile:
    """The vault file parsed (not yet authenticated), from a private directory."""
    vault_file.check_dir(path.parent)
    data = vault_file.read_private(path)
    with codec.gc_paused():
        return fileformat.parse(data)


def _wrap_of(header: Header) -> tuple[object, ...]:
    """What identifies the data key's wrapping: it changes exactly when passwd ran."""
    return (header.kdf, header.salt, header.wrap_nonce, header.wrapped_key)


def _kept_record(name: str, entry: codec.Slot, reuse: dict[str, RawRecord] | None,
                 loaded: Records, records: dict[str, RawRecord]) -> RawRecord | None:
    """The existing record for an unchanged entry, or None when it must be sealed anew."""
    if reuse is not None and name in reuse:
        return reuse[name]
    if loaded.get(name) is entry:
        return records[name]
    return None

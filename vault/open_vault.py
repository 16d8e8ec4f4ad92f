"""`Vault`: an open vault file and the operations on its entries.

How a save reaches the disk is `save_engine`'s; making and checking a new entry is
`entry_rules`'; backups and restore are `backups`'; changing the passphrase is `rekey`'s.
"""

from __future__ import annotations

import builtins
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from . import backups as _backups
from . import codec, crypto, fileformat, rekey, vault_file
from .backups import Backup
from .entries import (
    MAX_NOTE,
    Entry,
    check_live,
    check_name,
    check_nonce_unit,
    check_text,
    new_pair_id,
)
from .entry_rules import (
    KeyCache,
    check_secret,
    cleaned_secret,
    new_entry,
    not_found,
    refuse_shared_key,
    retired_name,
    rotated_pair,
    var_name,
    with_marks,
)
from .errors import AlreadyExistsError, ClosedError, InvalidInputError, VaultWarning
from .exchanges.profiles import KRAKEN_KEYS_PER_ACCOUNT
from .exchanges.validation import validate_api_key
from .nonces import nonce_counter_id
from .nonces.marks import VaultCounters
from .save_engine import Records as _Entries
from .save_engine import SavedFile, read_checked
from .scopes import General, Withdrawal, parse_general, parse_withdrawal
from .secret import Secret
from .vault_path import resolve_vault_path

# Backup, check_secret and new_entry are re-exported: callers name them from here.
__all__ = ["Backup", "Vault", "VaultWarning", "check_secret", "new_entry"]


class Vault:
    """An unlocked vault. Use `Vault.create` or `Vault.open`; close it (or use `with`)."""

    def __init__(self, path: Path, data_key: bytes, parsed: fileformat.ParsedFile,
                 entries: _Entries, *, seen: int = 0) -> None:
        self.path = path
        # A bytearray so that close() can overwrite it; see SECURITY.md for what remains.
        self._data_key = bytearray(data_key)
        # The save engine (save_engine.py): the file's state, the lock, the generation floor.
        self._file = SavedFile(path, codec.Keys.from_data_key(data_key), parsed, entries,
                               seen=seen)
        self._nonces: VaultCounters | None = None
        self._key_cache: KeyCache = {}  # entry_rules.refuse_shared_key's

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str] | None, passphrase: str | bytes, *,
               kdf: crypto.KdfParams | None = None) -> Vault:
        """Create a new, empty vault. Refuses to overwrite an existing one."""
        target = resolve_vault_path(path)
        secret = crypto.encode_passphrase(passphrase)
        params = kdf or crypto.calibrate()
        crypto.check_params(params, error=InvalidInputError)
        crypto.check_machine(params, error=InvalidInputError, limit=crypto.INIT_MAX_SECONDS)
        vault_file.ensure_private_dir(target.parent)
        data_key = os.urandom(crypto.KEY_SIZE)
        header = codec.new_header(secret, data_key, params)
        data = codec.encode(header, [], codec.Keys.from_data_key(data_key))
        with vault_file.lock(target):
            if os.path.lexists(target):
                raise AlreadyExistsError(f"a vault exists already at {target}; it was left "
                                         "as it is", hint="pass another --vault for a second "
                                         "vault")
            vault_file.atomic_write(target, data, verify=codec.equal_to(data), backup_as=None,
                               create=True)
        return cls(target, data_key, fileformat.parse(data), {})

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None, passphrase: str | bytes, *,
             allow_rollback: bool = False) -> Vault:
        """Open with the passphrase. FormatError before the KDF, AuthenticationError after;
        RollbackError (before the KDF) for a generation below one already seen here, unless
        `allow_rollback` (what `restore` uses to go back on purpose)."""
        target = resolve_vault_path(path)
        parsed, seen = read_checked(target, allow_rollback=allow_rollback)
        data_key = codec.unwrap(parsed.header, crypto.encode_passphrase(passphrase))
        return cls._opened(target, data_key, parsed, seen)

    @classmethod
    def open_with_key(cls, path: str | os.PathLike[str] | None, data_key: bytes, *,
                      allow_rollback: bool = False) -> Vault:
        """Open with the data key itself (the agent's way: it never holds the passphrase)."""
        target = resolve_vault_path(path)
        parsed, seen = read_checked(target, allow_rollback=allow_rollback)
        return cls._opened(target, data_key, parsed, seen)

    @classmethod
    def _opened(cls, target: Path, data_key: bytes, parsed: fileformat.ParsedFile,
                seen: int) -> Vault:
        entries = codec.decode(parsed, codec.Keys.from_data_key(data_key))
        return cls(target, data_key, parsed, entries, seen=seen)

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Drop the keys and entries. Python cannot wipe them from memory: see SECURITY.md."""
        self._file.close()
        self._data_key[:] = bytes(len(self._data_key))
        if self._nonces is not None:
            self._nonces.close()
            self._nonces = None
        self._key_cache = {}

    def __repr__(self) -> str:
        state = "closed" if self._file.keys is None else f"{len(self._entries)} entries"
        return f"Vault({str(self.path)!r}, {state})"

    @property
    def generation(self) -> int:
        return self._file.header.generation

    @property
    def kdf(self) -> crypto.KdfParams:
        return self._file.header.kdf

    @property
    def vault_id(self) -> bytes:
        return self._file.header.vault_id

    @property
    def _entries(self) -> _Entries:
        if self._file.keys is None:  # every read of a closed vault is refused, not empty
            raise ClosedError("the vault is closed",
                              hint="open it again (Vault.open) or use it inside `with`")
        return self._file.entries

    # -- reading -------------------------------------------------------------------------

    def list(self, *, retired: bool = False) -> list[Entry]:
        """Entries by name; retired pairs (kept after `rotate`) only with `retired=True`."""
        every = [self._entry(n) for n in sorted(self._entries) if codec.is_entry_name(n)]
        return [e for e in every if retired or not e.retired]

    def get(self, name: str) -> Entry:
        if name not in self:
            raise not_found(name, self._entries)
        return self._entry(name)

    def _entry(self, name: str) -> Entry:
        slot = self._entries[name]
        if not isinstance(slot, Entry):
            slot = self._entries[name] = codec.materialize(name, slot)
        return slot

    def reload(self) -> bool:
        """Adopt a newer generation saved by another process; True when anything changed.

        Needs no lock: saves replace the file atomically, so a read sees one whole file.
        """
        return self._file.reload()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and codec.is_entry_name(name) and name in self._entries

    def __len__(self) -> int:
        return sum(1 for n in self._entries if codec.is_entry_name(n))

    # -- writing -------------------------------------------------------------------------

    def add(self, name: str, *, exchange: str, api_key: str, api_secret: str | Secret,
            general: General | str, withdrawal: Withdrawal | str, account: str | None = None,
            note: str = "", nonce_unit: str = "ms", env_key: str | None = None,
            env_secret: str | None = None) -> Entry:
        """Validate and store a new key pair. Warns (VaultWarning) about what it repaired."""
        entry = new_entry(name, exchange=exchange, api_key=api_key, api_secret=api_secret,
                          general=general, withdrawal=withdrawal, account=account, note=note,
                          nonce_unit=nonce_unit, env_key=env_key, env_secret=env_secret)

        def op(entries: _Entries) -> _Entries:
            if entry.name in entries:
                raise AlreadyExistsError(f"an entry named {name!r} exists already",
                                         hint="pick another name, or botvault rm it first")
            refuse_shared_key(entries, [entry], self._key_cache)
            entries[entry.name] = entry
            return entries

        self._apply(op)
        self._warn_account_limit(entry.account)
        return entry

    def check_new_name(self, name: str) -> None:
        """Refuse a name that is taken (exit 4) before the caller asks for the key pair."""
        check_name(name)
        if name in self._entries:
            raise AlreadyExistsError(f"an entry named {name!r} exists already",
                                     hint="pick another name, or botvault rm it first")

    def _warn_account_limit(self, account: str | None) -> None:
        count = sum(1 for e in self.list(retired=True) if account and e.account == account)
        if count >= KRAKEN_KEYS_PER_ACCOUNT:
            warnings.warn(f"account {account!r} now has {count} keys; Kraken allows at most "
                          f"{KRAKEN_KEYS_PER_ACCOUNT} per account", VaultWarning, stacklevel=3)

    def edit(self, name: str, *, general: General | str | None = None,
             withdrawal: Withdrawal | str | None = None, account: str | None = None,
             note: str | None = None, nonce_unit: str | None = None,
             env_key: str | None = None, env_secret: str | None = None) -> Entry:
        """Change labels. None leaves a field alone; "" clears account, env_key, env_secret."""
        changes: dict[str, object] = {}
        if general is not None:
            changes["general"] = parse_general(general)
        if withdrawal is not None:
            changes["withdrawal"] = parse_withdrawal(withdrawal)
        if account is not None:
            changes["account"] = check_text("account label", account) or None
        if note is not None:
            changes["note"] = check_text("note", note, MAX_NOTE)
        if nonce_unit is not None:
            changes["nonce_unit"] = check_nonce_unit(nonce_unit)
            self._check_unit_change(name, nonce_unit)
        for field_name, value in (("env_key", env_key), ("env_secret", env_secret)):
            if value is not None:
                changes[field_name] = var_name(value or None)
        return self._replace(name, lambda e: e.with_changes(**changes))

    def _check_unit_change(self, name: str, unit: str) -> None:
        entry = self.get(name)
        warning = self._counters().store(name).check_unit_change(
            nonce_counter_id(entry), entry.nonce_unit, unit)
        if warning:
            warnings.warn(warning, VaultWarning, stacklevel=3)

    def rename(self, old: str, new: str) -> Entry:
        check_name(new)

        def op(entries: _Entries) -> _Entries:
            entry = self._lookup(entries, old)
            if new in entries:
                raise AlreadyExistsError(f"an entry named {new!r} exists already")
            del entries[old]
            entries[new] = entry.with_changes(name=new)
            return entries

        self._apply(op)
        return self._entry(new)

    def remove(self, name: str) -> Entry:
        removed: list[Entry] = []

        def op(entries: _Entries) -> _Entries:
            removed.append(self._lookup(entries, name))
            del entries[name]
            return entries

        self._apply(op)
        return removed[0]

    def rotate(self, name: str, *, api_key: str, api_secret: str | Secret
               ) -> tuple[Entry, Entry]:
        """Store a new pair under `name` (same scopes, env names, nonce unit); keep the old
        pair as a retired entry that is never handed out, until `remove` deletes it.

        Returns (the new entry, the retired one)."""
        old = self._live_entry(name)
        secret = cleaned_secret(old.exchange, api_secret)
        checked_key = validate_api_key(old.exchange, api_key)
        retired_as: list[str] = []

        def op(entries: _Entries) -> _Entries:
            # Built from the entry as saved now, under the lock, not from this handle's
            # copy: an edit another process made meanwhile (note, scopes, names) is kept.
            current = self._lookup(entries, name)
            check_live(name, current.retired, hint=None)
            new = rotated_pair(current, checked_key, secret)
            refuse_shared_key(entries, [new], self._key_cache)
            retired_as[:] = [retired_name(name, entries)]
            entries[retired_as[0]] = current.with_changes(name=retired_as[0], retired=True)
            entries[name] = new
            return entries

        self._apply(op)
        return self._entry(name), self._entry(retired_as[0])

    def import_entries(self, entries: builtins.list[Entry]) -> builtins.list[Entry]:
        """Add copies of entries from another vault (e.g. an export), keeping every label.
        Refuses the whole batch if any name exists already. Each copy is a new pair to this
        vault (a new identity, no rotation chain): no grant issued here follows it."""
        copies = [e.with_changes(entry_id=os.urandom(fileformat.ID_SIZE), pair_id=new_pair_id(),
                                 rotated_from=()) for e in entries]

        def op(current: _Entries) -> _Entries:
            clash = sorted(e.name for e in copies if e.name in current)
            if clash:
                raise AlreadyExistsError(f"entries exist already: {', '.join(clash)}",
                                         hint="rename or remove them first")
            refuse_shared_key(current, copies, self._key_cache)
            current.update((e.name, e) for e in copies)
            return current

        self._apply(op)
        return copies

    def _replace(self, name: str, change: Callable[[Entry], Entry]) -> Entry:
        def op(entries: _Entries) -> _Entries:
            entries[name] = change(self._lookup(entries, name))
            return entries

        self._apply(op)
        return self._entry(name)

    def _lookup(self, entries: _Entries, name: str) -> Entry:
        if name not in entries or not codec.is_entry_name(name):
            raise not_found(name, entries)
        return codec.materialize(name, entries[name])

    # -- records of other kinds (grant_ops.py), named "KIND:NAME" ----------------------------

    def records(self, prefix: str) -> builtins.list[codec.Record]:
        """The records whose name starts with `prefix` (say "grant:"), by name."""
        found: builtins.list[codec.Record] = []
        for name in sorted(n for n in self._entries if n.startswith(prefix)):
            record = codec.materialize_record(name, self._entries[name])
            self._entries[name] = record  # parsed once, as _entry() does for entries
            found.append(record)
        return found

    def update_records(self, op: Callable[[_Entries], _Entries]) -> None:
        """Save what `op` makes of every record, under the save lock, from the file as it
        is now (see `_apply`). For modules that keep their own records in the vault."""
        self._apply(op)

    def entry_from(self, records: _Entries, name: str) -> Entry:
        """The entry `name` among the records an `update_records` op was given."""
        return self._lookup(records, name)

    @staticmethod
    def record_from(records: _Entries, name: str) -> codec.Record:
        return codec.materialize_record(name, records[name])

    # -- API nonces ----------------------------------------------------------------------

    def next_nonce(self, name: str, at_least: int | None = None) -> int:
        """The next API nonce for this entry's key: above every one handed out before, by
        any process on this machine, in the entry's unit; and at least `at_least` (a floor
        from the gateways sharing the key through etcd), which the counter keeps."""
        return self._counters().next(self._live_entry(name), at_least)

    def allocate_nonces(self, name: str, count: int) -> range:
        """`count` consecutive nonces, all above every one handed out before."""
        return (self._nonces or self._counters()).allocate(self._live_entry(name), count)

    def peek_nonce(self, name: str) -> tuple[int | None, float]:
        """(last nonce handed out or None, seconds it stands ahead of the clock); writes
        nothing, so it works on a read-only file system."""
        return self._counters().peek(self.get(name))

    def recover_nonces(self, name: str) -> builtins.list[str]:
        """Repair the nonce state and set `name`'s counter to at least the mark this vault
        recorded and the clock plus a margin (vault.nonces.marks); what was done, in words."""
        return self._counters().recover(self.get(name))

    def record_nonce_marks(self) -> None:
        """Record every counter's durable mark in the vault (the agent does at lock)."""
        self._record_marks(self._counters().marks(self.list(retired=True), every=True))

    def _counters(self) -> VaultCounters:
        if self._nonces is None:
            self._nonces = VaultCounters(self.path, self._record_marks)
        return self._nonces

    def _record_marks(self, marks: dict[str, int]) -> None:
        if marks:
            self._apply(lambda entries: with_marks(entries, marks))

    def _live_entry(self, name: str) -> Entry:
        entry = self._entries.get(name) if type(name) is str and ":" not in name else None
        entry = entry if type(entry) is Entry else self.get(name)  # not loaded yet, or none
        check_live(name, entry.retired)
        return entry

    # -- passphrase and backups ----------------------------------------------------------

    def change_passphrase(self, new_passphrase: str | bytes, *,
                          kdf: crypto.KdfParams | None = None,
                          drop_damaged_backups: bool = False) -> builtins.list[int]:
        """Re-seal every record, and every backup, under a fresh data key wrapped by the new
        passphrase (see `rekey`). Returns the generations of damaged backups removed."""
        data_key, damaged = rekey.change_passphrase(
            self._file, new_passphrase, kdf=kdf, drop_damaged_backups=drop_damaged_backups)
        self._data_key[:] = bytes(len(self._data_key))
        self._data_key = bytearray(data_key)
        return damaged

    def backups(self) -> builtins.list[Backup]:
        """The automatic backups, newest first, each verified under this vault's key."""
        return _backups.list_verified(self._file)

    def restore(self, generation: int) -> None:
        """Make backup `generation` the current state (see `backups.restore`); no grant
        comes back more usable than it is now."""
        _backups.restore(self._file, generation)

    def hand_out_data_key(self) -> bytes:
        """A copy of the data key, which opens this vault (`Vault.open_with_key`) without
        the passphrase. The one way it leaves a `Vault`; two callers have a reason to:
        `botvault unlock` (session.start_agent), handing it to the agent it starts, and the
        agent's `data_key` op, handing it to a command of the same user over the agent's
        private socket (a sign-only agent refuses that op). The copy is immutable and so
        cannot be wiped: hand it on at once and drop it. ClosedError once closed."""
        self._require_keys()
        return bytes(self._data_key)

    # -- internals -----------------------------------------------------------------------

    def _require_keys(self) -> codec.Keys:
        return self._file.require_keys()

    def _apply(self, op: Callable[[_Entries], _Entries]) -> None:
        self._file.apply(lambda entries: self._with_marks(op(entries)))

    def _with_marks(self, entries: _Entries) -> _Entries:
        """Every save records the nonce marks of the counters this process used."""
        if self._nonces is None:
            return entries
        used = [e for e in entries.values() if isinstance(e, Entry)]
        return with_marks(entries, self._nonces.marks(used))


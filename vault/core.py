"""`Vault`: an open vault file and the operations on its entries."""

from __future__ import annotations

import builtins
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from . import codec, crypto, fileformat, store
from .entries import Entry, check_name, check_nonce_unit, check_text, now_utc
from .errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ScopeError,
    VaultWarning,
)
from .exchanges.validation import check_exchange, clean_secret, validate_api_key
from .fileformat import Header, RawRecord
from .nonces import NonceStore, nonce_counter_id, nonce_state_path
from .paths import resolve_vault_path
from .scopes import General, Withdrawal, parse_general, parse_withdrawal
from .secret import Secret

__all__ = ["Backup", "Vault", "VaultWarning"]

KRAKEN_KEYS_PER_ACCOUNT = 50
_Entries = dict[str, codec.Slot]


class Backup:
    """One automatic backup: its generation and file."""

    def __init__(self, generation: int, path: Path, entries: int) -> None:
        self.generation, self.path, self.entries = generation, path, entries

    def __repr__(self) -> str:
        return f"Backup(generation={self.generation}, entries={self.entries})"


class Vault:
    """An unlocked vault. Use `Vault.create` or `Vault.open`; close it (or use `with`)."""

    def __init__(self, path: Path, data_key: bytes, parsed: fileformat.ParsedFile,
                 entries: _Entries) -> None:
        self.path = path
        # A bytearray so that close() can overwrite it; see SECURITY.md for what remains.
        self._data_key = bytearray(data_key)
        keys = codec.Keys.from_data_key(data_key)
        self._keys: codec.Keys | None = keys
        self._header = parsed.header
        self._entries = entries
        self._records = dict(zip(entries, parsed.records, strict=True))
        self._sealer = crypto.Sealer(keys.entry, seen=(r.nonce for r in parsed.records))
        self._nonces: NonceStore | None = None
        self._seen: tuple[int, ...] | None = None  # the file as last checked by reload()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str] | None, passphrase: str | bytes, *,
               kdf: crypto.KdfParams | None = None) -> Vault:
        """Create a new, empty vault. Refuses to overwrite an existing one."""
        target = resolve_vault_path(path)
        secret = crypto.encode_passphrase(passphrase)
        params = kdf or crypto.calibrate()
        crypto.check_params(params, error=InvalidInputError)
        store.ensure_private_dir(target.parent)
        data_key = os.urandom(crypto.KEY_SIZE)
        header = codec.new_header(secret, data_key, params)
        data = codec.encode(header, [], codec.Keys.from_data_key(data_key))
        with store.lock(target):
            if os.path.lexists(target):
                raise AlreadyExistsError(f"a vault exists already at {target}",
                                         hint="pass another --vault, or remove the old one")
            store.atomic_write(target, data, verify=codec.equal_to(data), backup_as=None,
                               create=True)
        return cls(target, data_key, fileformat.parse(data), {})

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None, passphrase: str | bytes) -> Vault:
        """Open with the passphrase. FormatError before the KDF, AuthenticationError after."""
        target = resolve_vault_path(path)
        parsed = _read(target)
        data_key = codec.unwrap(parsed.header, crypto.encode_passphrase(passphrase))
        return cls.open_with_key(target, data_key, _parsed=parsed)

    @classmethod
    def open_with_key(cls, path: str | os.PathLike[str] | None, data_key: bytes, *,
                      _parsed: fileformat.ParsedFile | None = None) -> Vault:
        """Open with the data key itself (the agent's way: it never holds the passphrase)."""
        target = resolve_vault_path(path)
        parsed = _parsed or _read(target)
        return cls(target, data_key, parsed,
                   codec.decode(parsed, codec.Keys.from_data_key(data_key)))

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Drop the keys and entries. Python cannot wipe them from memory: see SECURITY.md."""
        self._keys = None
        self._data_key[:] = bytes(len(self._data_key))
        if self._nonces is not None:
            self._nonces.close()
            self._nonces = None
        self._entries = {}
        self._records = {}

    def __repr__(self) -> str:
        state = "closed" if self._keys is None else f"{len(self._entries)} entries"
        return f"Vault({str(self.path)!r}, {state})"

    @property
    def generation(self) -> int:
        return self._header.generation

    @property
    def kdf(self) -> crypto.KdfParams:
        return self._header.kdf

    @property
    def vault_id(self) -> bytes:
        return self._header.vault_id

    # -- reading -------------------------------------------------------------------------

    def list(self, *, retired: bool = False) -> list[Entry]:
        """Entries by name; retired pairs (kept after `rotate`) only with `retired=True`."""
        every = [self._entry(n) for n in sorted(self._entries) if codec.is_entry_name(n)]
        return [e for e in every if retired or not e.retired]

    def get(self, name: str) -> Entry:
        if name not in self:
            raise NotFoundError(f"no entry named {name!r}",
                                hint="see the names with: botvault list")
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
        seen = _file_signature(self.path)
        if seen is not None and seen == self._seen:
            return False  # the agent calls this before every request: one stat, not a read
        before = self._header
        self._refresh()
        self._seen = seen
        return self._header != before

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
        secret = _cleaned_secret(check_exchange(exchange), api_secret)
        entry = Entry(
            name=check_name(name), exchange=exchange,
            api_key=validate_api_key(exchange, api_key), api_secret=Secret(secret),
            general=parse_general(general), withdrawal=parse_withdrawal(withdrawal),
            account=check_text("account label", account) if account else None,
            note=check_text("note", note, 4096), nonce_unit=check_nonce_unit(nonce_unit),
            env_key=_var_name(env_key), env_secret=_var_name(env_secret),
            entry_id=os.urandom(fileformat.ID_SIZE))

        def op(entries: _Entries) -> _Entries:
            if entry.name in entries:
                raise AlreadyExistsError(f"an entry named {name!r} exists already",
                                         hint="pick another name, or botvault rm it first")
            entries[entry.name] = entry
            return entries

        self._apply(op)
        self._warn_account_limit(entry.account)
        return entry

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
            changes["note"] = check_text("note", note, 4096)
        if nonce_unit is not None:
            changes["nonce_unit"] = check_nonce_unit(nonce_unit)
            self._check_unit_change(name, nonce_unit)
        for field_name, value in (("env_key", env_key), ("env_secret", env_secret)):
            if value is not None:
                changes[field_name] = _var_name(value or None)
        return self._replace(name, lambda e: e.with_changes(**changes))

    def _check_unit_change(self, name: str, unit: str) -> None:
        entry = self.get(name)
        warning = self._nonce_store().check_unit_change(nonce_counter_id(entry),
                                                        entry.nonce_unit, unit)
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
        secret = _cleaned_secret(old.exchange, api_secret)
        new = old.with_changes(api_key=validate_api_key(old.exchange, api_key),
                               api_secret=Secret(secret), created_at=now_utc(),
                               entry_id=os.urandom(fileformat.ID_SIZE))
        if new.api_key == old.api_key and new.api_secret == old.api_secret:
            raise InvalidInputError("the new key pair is the one already stored",
                                    hint="create a new key on the exchange first")

        retired_as: list[str] = []

        def op(entries: _Entries) -> _Entries:
            current = self._lookup(entries, name)
            retired_as[:] = [_retired_name(name, entries)]
            entries[retired_as[0]] = current.with_changes(name=retired_as[0], retired=True)
            entries[name] = new
            return entries

        self._apply(op)
        return self._entry(name), self._entry(retired_as[0])

    def import_entries(self, entries: builtins.list[Entry]) -> builtins.list[Entry]:
        """Add copies of entries from another vault (e.g. an export), keeping every label.
        Refuses the whole batch if any name exists already."""
        copies = [e.with_changes(entry_id=os.urandom(fileformat.ID_SIZE)) for e in entries]

        def op(current: _Entries) -> _Entries:
            clash = sorted(e.name for e in copies if e.name in current)
            if clash:
                raise AlreadyExistsError(f"entries exist already: {', '.join(clash)}",
                                         hint="rename or remove them first")
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
            raise NotFoundError(f"no entry named {name!r}",
                                hint="see the names with: botvault list")
        return codec.materialize(name, entries[name])

    # -- records of other kinds (grants.py), named "KIND:NAME" ----------------------------

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

    def next_nonce(self, name: str) -> int:
        """The next API nonce for this entry's key: above every one handed out before, by
        any process on this machine, in the entry's unit."""
        entry = self._live_entry(name)
        return self._nonce_store().next(nonce_counter_id(entry), entry.nonce_unit)

    def allocate_nonces(self, name: str, count: int) -> range:
        """`count` consecutive nonces, all above every one handed out before."""
        entry = self._live_entry(name)
        return self._nonce_store().allocate(nonce_counter_id(entry), entry.nonce_unit, count)

    def peek_nonce(self, name: str) -> tuple[int | None, float]:
        """(last nonce handed out or None, seconds it stands ahead of the clock)."""
        entry = self.get(name)
        store_ = self._nonce_store()
        counter = nonce_counter_id(entry)
        return store_.peek(counter), store_.ahead_of_clock(counter, entry.nonce_unit)

    def _nonce_store(self) -> NonceStore:
        if self._nonces is None:
            self._nonces = NonceStore(nonce_state_path(self.path))
        return self._nonces

    def _live_entry(self, name: str) -> Entry:
        entry = self.get(name)
        if entry.retired:
            raise ScopeError(f"{name!r} is a retired key pair and is never used again",
                             hint="use the current entry it was rotated into")
        return entry

    # -- passphrase and backups ----------------------------------------------------------

    def change_passphrase(self, new_passphrase: str | bytes, *,
                          kdf: crypto.KdfParams | None = None) -> None:
        """Re-wrap the data key under a new passphrase (entries are not re-encrypted).

        The backups are re-wrapped too, so the old passphrase opens nothing afterwards.
        """
        params = kdf or self._header.kdf
        crypto.check_params(params, error=InvalidInputError)
        secret = crypto.encode_passphrase(new_passphrase)
        with store.lock(self.path):
            self._refresh()
            header = codec.new_header(secret, bytes(self._require_data_key()), params,
                                      vault_id=self._header.vault_id,
                                      generation=self._header.generation)
            self._write_locked(dict(self._entries), header=header)
            self._rewrap_backups_locked()

    def _rewrap_backups_locked(self) -> None:
        keys = self._require_keys()
        for generation, path in store.list_backups(self.path):
            parsed = fileformat.parse(store.read_private(path))
            codec.decode(parsed, keys)
            header = self._header.with_generation(generation)
            data = codec.encode(header, list(parsed.records), keys)
            store.atomic_write(path, data, verify=codec.equal_to(data), backup_as=None)

    def backups(self) -> builtins.list[Backup]:
        """The automatic backups, newest first, each verified under this vault's key."""
        found = []
        for generation, path in store.list_backups(self.path):
            parsed = fileformat.parse(store.read_private(path))
            codec.decode(parsed, self._require_keys())
            found.append(Backup(generation, path, len(parsed.records)))
        return found

    def restore(self, generation: int) -> None:
        """Make backup `generation` the current state (saved as a new generation).

        Grants are the exception: none comes back more usable than it is now (see
        grants.no_resurrection)."""
        from .grants import no_resurrection

        with store.lock(self.path):
            self._refresh()
            parsed = fileformat.parse(store.read_private(store.backup_path(self.path, generation)))
            entries = codec.decode(parsed, self._require_keys())
            reuse = dict(zip(entries, parsed.records, strict=True))
            for name, record in no_resurrection(self._entries, entries).items():
                entries[name] = record
                reuse.pop(name)  # sealed anew
            self._write_locked(entries, reuse=reuse)

    # -- internals -----------------------------------------------------------------------

    def _require_keys(self) -> codec.Keys:
        if self._keys is None:
            raise ConflictError("the vault is closed")
        return self._keys

    def _require_data_key(self) -> bytearray:
        self._require_keys()
        return self._data_key

    def _apply(self, op: Callable[[_Entries], _Entries]) -> None:
        with store.lock(self.path):
            self._refresh()
            self._write_locked(op(dict(self._entries)))

    def _refresh(self) -> None:
        """Adopt what another process saved since we loaded, so no update is lost.

        Generations only grow under the lock, so an unchanged header means an unchanged file.
        """
        if store.read_head(self.path, fileformat.HEADER_SIZE) == self._header.pack(
                len(self._records)):
            return
        parsed = _read(self.path)
        if parsed.header.vault_id != self._header.vault_id:
            raise ConflictError(f"the vault at {self.path} was replaced by a different vault",
                                hint="open it again")
        known = {self._records[n].nonce: (n, e) for n, e in self._entries.items()}
        self._entries = codec.decode(parsed, self._require_keys(), known=known)
        self._records = dict(zip(self._entries, parsed.records, strict=True))
        self._header = parsed.header
        for record in parsed.records:
            self._sealer.note(record.nonce)

    def _write_locked(self, entries: _Entries, *, header: Header | None = None,
                      reuse: dict[str, RawRecord] | None = None) -> None:
        keys = self._require_keys()
        base = header or self._header
        records: list[RawRecord] = []
        changed: list[RawRecord] = []
        with codec.gc_paused():
            for name, entry in entries.items():
                kept = _kept_record(name, entry, reuse, self._entries, self._records)
                if kept is None:
                    kept = codec.seal_entry(self._sealer, base.vault_id,
                                            codec.materialize_record(name, entry))
                    changed.append(kept)
                records.append(kept)
        new_header = base.with_generation(self._header.generation + 1)
        data = codec.encode(new_header, records, keys)
        store.atomic_write(self.path, data, verify=codec.save_verifier(data, changed, keys),
                           backup_as=self._header.generation)
        self._header, self._entries = new_header, entries
        self._records = dict(zip(entries, records, strict=True))


def _file_signature(path: Path) -> tuple[int, ...] | None:
    """Identity of the file now: every save replaces it (new inode, size, mtime)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _cleaned_secret(exchange: str, api_secret: str | Secret) -> str:
    """The secret as stored: validated, line-wrap whitespace removed with a warning."""
    raw = api_secret.reveal() if isinstance(api_secret, Secret) else api_secret
    secret, removed = clean_secret(exchange, raw)
    if removed:
        warnings.warn(f"removed {removed} whitespace character{'s' if removed != 1 else ''} "
                      "from the secret (a line-wrap artefact of copying)", VaultWarning,
                      stacklevel=4)
    return secret


def _retired_name(name: str, taken: _Entries) -> str:
    for n in range(1, 10_000):
        suffix = f".retired-{n}"
        candidate = name[: 64 - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise InvalidInputError(f"too many retired pairs for {name!r}",
                            hint="remove some with botvault rm")


def _var_name(name: str | None) -> str | None:
    """An env var override is checked when it is set, not when a bot starts."""
    from .handover import validate_var_name

    return None if name is None else validate_var_name(name)


def _kept_record(name: str, entry: codec.Slot, reuse: dict[str, RawRecord] | None,
                 loaded: _Entries, records: dict[str, RawRecord]) -> RawRecord | None:
    """The existing record for an unchanged entry, or None when it must be sealed anew."""
    if reuse is not None and name in reuse:
        return reuse[name]
    if loaded.get(name) is entry:
        return records[name]
    return None


def _read(path: Path) -> fileformat.ParsedFile:
    store.check_dir(path.parent)
    data = store.read_private(path)
    with codec.gc_paused():
        return fileformat.parse(data)

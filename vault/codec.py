"""Between the parsed file and the decrypted entries: unwrap, verify, seal, assemble.

Order on the way in: unwrap the data key (needs the KEK), verify the MAC over header and
every record, only then decrypt records. Any failure after the KDF is one
AuthenticationError, whichever check it was.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import crypto, fileformat
from .entries import Entry
from .errors import FormatError
from .fileformat import Header, ParsedFile, RawRecord
from .grant_record import Grant, is_grant_record

__all__ = ["Keys", "Record", "Slot", "Unparsed", "decode", "encode", "equal_to", "gc_paused",
           "is_entry_name", "materialize", "materialize_record", "new_header", "reseal",
           "save_verifier", "seal_entry", "unwrap"]

_ENTRY_PURPOSE = b"botvault-entry"
_MAC_PURPOSE = b"botvault-mac"


@dataclass(frozen=True, repr=False)
class Keys:
    """The data key's subkeys. Holding these is holding the vault open."""

    entry: bytes
    mac: bytes

    @classmethod
    def from_data_key(cls, data_key: bytes) -> Keys:
        return cls(crypto.subkey(data_key, _ENTRY_PURPOSE), crypto.subkey(data_key, _MAC_PURPOSE))

    def __repr__(self) -> str:
        return "Keys(<redacted>)"


def new_header(passphrase: bytes, data_key: bytes, kdf: crypto.KdfParams, *,
               vault_id: bytes | None = None, generation: int = 0) -> Header:
    """A header with a fresh salt, the data key wrapped under the passphrase's KEK."""
    salt = os.urandom(crypto.SALT_SIZE)
    blank = Header(kdf, salt, vault_id or os.urandom(fileformat.ID_SIZE), generation,
                   bytes(crypto.NONCE_SIZE), bytes(crypto.KEY_SIZE + crypto.TAG_SIZE))
    kek = crypto.derive_kek(passphrase, salt, kdf)
    nonce, wrapped = crypto.Sealer(kek).seal(data_key, blank.wrap_aad())
    return Header(kdf, salt, blank.vault_id, generation, nonce, wrapped)


def unwrap(header: Header, passphrase: bytes) -> bytes:
    kek = crypto.derive_kek(passphrase, header.salt, header.kdf)
    return crypto.open_sealed(kek, header.wrap_nonce, header.wrapped_key, header.wrap_aad())


class Unparsed:
    """A verified, decrypted record whose JSON is parsed on first use.

    Opening a large vault then costs one decryption per record, not one parse; the name
    (needed for lookups) comes before the JSON in the plaintext.
    """

    __slots__ = ("entry_id", "json")

    def __init__(self, json: bytes, entry_id: bytes) -> None:
        self.json, self.entry_id = json, entry_id

    def __repr__(self) -> str:
        return "Unparsed(<redacted>)"


Record = Entry | Grant
Slot = Record | Unparsed


def is_entry_name(name: str) -> bool:
    """Entries are the records whose name has no colon; others ("grant:BOT") are kept in
    the same file by the modules that own them, and are sealed, saved and backed up alike."""
    return ":" not in name


def materialize(name: str, slot: Slot) -> Entry:
    record = materialize_record(name, slot)
    if not isinstance(record, Entry):
        raise FormatError("an entry in the vault is malformed")
    return record


def materialize_record(name: str, slot: Slot) -> Record:
    """The record of any kind in `slot`, parsed by the kind its name says."""
    if not isinstance(slot, Unparsed):
        return slot
    record: Record
    if is_grant_record(name):
        record = Grant.from_plaintext(slot.json, slot.entry_id)
    else:
        record = Entry.from_plaintext(slot.json, slot.entry_id)
    if record.name != name:
        raise FormatError("an entry in the vault is malformed")
    return record


def decode(parsed: ParsedFile, keys: Keys, *,
           known: dict[bytes, tuple[str, Slot]] | None = None) -> dict[str, Slot]:
    """Verify the whole file, then decrypt its records into entries by name.

    `known` maps record nonces already decrypted (from a previous load of the same vault)
    to their (name, entry), so a reload decrypts only what changed.
    """
    crypto.verify_mac(keys.mac, parsed.authenticated_part, parsed.tag)
    entries: dict[str, Slot] = {}
    seen_ids: set[bytes] = set()
    with gc_paused():
        for record in parsed.records:
            name, slot = _decrypted(record, keys, parsed.header.vault_id, known or {})
            if name in entries or record.entry_id in seen_ids:
                raise FormatError("the vault holds a duplicated entry")
            entries[name] = slot
            seen_ids.add(record.entry_id)
    return entries


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Thousands of small acyclic objects would trigger the cycle collector again and
    again (open grew 12x for 10x the entries with it running, 10x without)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _decrypted(record: RawRecord, keys: Keys, vault_id: bytes,
               known: dict[bytes, tuple[str, Slot]]) -> tuple[str, Slot]:
    hit = known.get(record.nonce)
    if hit is not None and hit[1].entry_id == record.entry_id:
        return hit
    plain = crypto.open_sealed(keys.entry, record.nonce, record.ciphertext,
                               record.aad(vault_id))
    name, newline, body = plain.partition(b"\n")
    if not newline:
        raise FormatError("an entry in the vault is malformed")
    return name.decode("ascii", "replace"), Unparsed(body, record.entry_id)


def seal_entry(sealer: crypto.Sealer, vault_id: bytes, entry: Record) -> RawRecord:
    nonce, ciphertext = sealer.seal(entry.to_plaintext(),
                                    fileformat.record_aad(vault_id, entry.entry_id))
    return RawRecord(entry.entry_id, nonce, ciphertext)


def reseal(records: tuple[RawRecord, ...] | list[RawRecord], old: Keys, sealer: crypto.Sealer,
           vault_id: bytes, done: dict[RawRecord, RawRecord]) -> list[RawRecord]:
    """Every record decrypted under the old keys and sealed again by `sealer` (new keys).

    Generic on purpose: whatever a record holds (an entry or an internal record), its
    plaintext and entry id are carried over unchanged, so no record of any kind is left
    under the old key. `done` maps records already re-sealed (the very same bytes, shared
    by several generations) to their new form, so each is decrypted and sealed once.
    """
    out = []
    with gc_paused():
        for record in records:
            again = done.get(record)
            if again is None:
                aad = record.aad(vault_id)
                plain = crypto.open_sealed(old.entry, record.nonce, record.ciphertext, aad)
                nonce, ciphertext = sealer.seal(plain, aad)
                again = done[record] = RawRecord(record.entry_id, nonce, ciphertext)
            out.append(again)
    return out


def encode(header: Header, records: list[RawRecord], keys: Keys) -> bytes:
    body = fileformat.build(header, records)
    return body + crypto.mac(keys.mac, body)


def equal_to(data: bytes) -> Callable[[bytes], None]:
    """A save check: the bytes read back are exactly the bytes written."""
    def verify(readback: bytes) -> None:
        if readback != data:
            raise OSError("the file read back differs from what was written")
    return verify


def save_verifier(data: bytes, changed: list[RawRecord], keys: Keys
                  ) -> Callable[[bytes], None]:
    """Read back, check the MAC and decrypt every record this save sealed.

    Unchanged records are the very bytes verified when they were loaded, and the MAC
    (checked here over the bytes read back) proves they are still those bytes.
    """
    def verify(readback: bytes) -> None:
        equal_to(data)(readback)
        parsed = fileformat.parse(readback)
        crypto.verify_mac(keys.mac, parsed.authenticated_part, parsed.tag)
        for record in changed:
            crypto.open_sealed(keys.entry, record.nonce, record.ciphertext,
                               record.aad(parsed.header.vault_id))
    return verify

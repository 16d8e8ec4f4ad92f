"""Bytes <-> header and sealed records. Strict: every byte is accounted for.

Layout (all integers big-endian):

    offset size  field
    0      8     magic "BOTVAULT"
    8      2     format version (1)
    10     1     KDF id (1 = Argon2id)
    11     4     memory KiB
    15     4     passes
    19     4     lanes
    23     16    salt
    39     16    vault id
    55     8     generation
    63     24    wrap nonce
    87     48    data key sealed under the KEK (AAD = bytes 0..55)
    135    4     record count N
    then N x     16 entry id | 4 length L | 24 nonce | L ciphertext
                 (AAD = magic + version + vault id + entry id)
    end    32    BLAKE2b MAC over everything before it, under a subkey of the data key

The wrap's AAD leaves out the generation so that a save needs only the data key (the agent
never holds the passphrase); the MAC covers the generation and every record, so records
cannot be swapped, dropped, replayed or reordered. Parsing here happens before the KDF and
raises FormatError only; everything after the KDF is the caller's AuthenticationError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import NamedTuple

from .crypto import MAC_SIZE, TAG_SIZE, KdfParams, check_params
from .errors import FormatError

__all__ = ["Header", "ParsedFile", "RawRecord", "build", "parse", "parse_header"]

MAGIC = b"BOTVAULT"
VERSION = 1
KDF_ARGON2ID = 1
ID_SIZE = 16

_HEAD = struct.Struct(">8sHBIII16s16sQ24s48sI")
HEADER_SIZE = _HEAD.size  # 139, as in the table above
WRAP_AAD_END = 55
GENERATION_AT = 55
_RECORD_HEAD = struct.Struct(">16sI24s")
MAX_RECORDS = 1_000_000
MAX_RECORD = 64 * 1024


@dataclass(frozen=True)
class Header:
    kdf: KdfParams
    salt: bytes
    vault_id: bytes
    generation: int
    wrap_nonce: bytes
    wrapped_key: bytes

    def with_generation(self, generation: int) -> Header:
        return replace(self, generation=generation)

    def pack(self, record_count: int) -> bytes:
        return _HEAD.pack(MAGIC, VERSION, KDF_ARGON2ID, self.kdf.memory_kib, self.kdf.iterations,
                          self.kdf.parallelism, self.salt, self.vault_id, self.generation,
                          self.wrap_nonce, self.wrapped_key, record_count)

    def wrap_aad(self) -> bytes:
        return self.pack(0)[:WRAP_AAD_END]


class RawRecord(NamedTuple):
    """One sealed entry as stored. A NamedTuple: a vault holds thousands and opening one
    builds them all, and a tuple is built several times faster than a frozen dataclass."""

    entry_id: bytes
    nonce: bytes
    ciphertext: bytes

    def aad(self, vault_id: bytes) -> bytes:
        return record_aad(vault_id, self.entry_id)

    def pack(self) -> bytes:
        return _RECORD_HEAD.pack(self.entry_id, len(self.ciphertext), self.nonce) + self.ciphertext


@dataclass(frozen=True)
class ParsedFile:
    header: Header
    records: tuple[RawRecord, ...]
    authenticated_part: memoryview
    tag: bytes


def record_aad(vault_id: bytes, entry_id: bytes) -> bytes:
    return MAGIC + VERSION.to_bytes(2, "big") + vault_id + entry_id


def parse_header(data: bytes) -> tuple[Header, int]:
    """The header and the record count. Checks magic, version and KDF ranges."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not a botvault vault (wrong magic bytes)",
                          hint="check the --vault path or BOTVAULT_PATH")
    if len(data) < _HEAD.size:
        raise FormatError("the vault is truncated (incomplete header)",
                          hint="restore a backup: botvault restore --list")
    (_, version, kdf_id, memory, passes, lanes, salt, vault_id, generation, wrap_nonce,
     wrapped_key, count) = _HEAD.unpack_from(data)
    if version != VERSION:
        raise FormatError(f"unsupported vault format version {version} (this botvault reads "
                          f"version {VERSION})", hint="upgrade botvault")
    if kdf_id != KDF_ARGON2ID:
        raise FormatError(f"unsupported KDF id {kdf_id}")
    kdf = KdfParams(memory, passes, lanes)
    check_params(kdf, error=FormatError)
    header = Header(kdf, salt, vault_id, generation, wrap_nonce, wrapped_key)
    return header, count


def parse(data: bytes) -> ParsedFile:
    header, count = parse_header(data)
    min_record = _RECORD_HEAD.size + TAG_SIZE
    body_room = len(data) - _HEAD.size - MAC_SIZE
    if count > MAX_RECORDS or body_room < 0 or count * min_record > body_room:
        raise FormatError("the vault is truncated or its record count is corrupt",
                          hint="restore a backup: botvault restore --list")
    view = memoryview(data)
    records = []
    offset = _HEAD.size
    end = len(data) - MAC_SIZE
    for _ in range(count):
        records.append(_parse_record(view, offset, end))
        offset += _RECORD_HEAD.size + len(records[-1].ciphertext)
    if offset != end:
        raise FormatError("the vault has trailing or missing bytes",
                          hint="restore a backup: botvault restore --list")
    return ParsedFile(header, tuple(records), view[:end], bytes(view[end:]))


def _parse_record(view: memoryview, offset: int, end: int) -> RawRecord:
    if offset + _RECORD_HEAD.size > end:
        raise FormatError("the vault is truncated inside a record")
    entry_id, length, nonce = _RECORD_HEAD.unpack_from(view, offset)
    start = offset + _RECORD_HEAD.size
    if not TAG_SIZE <= length <= MAX_RECORD or start + length > end:
        raise FormatError("the vault has a record of impossible length")
    return RawRecord(entry_id, nonce, bytes(view[start:start + length]))


def build(header: Header, records: list[RawRecord] | tuple[RawRecord, ...]) -> bytes:
    """The file without its MAC (the caller appends it)."""
    return header.pack(len(records)) + b"".join(r.pack() for r in records)


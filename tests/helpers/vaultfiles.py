"""Small helpers for tests that look at vault files from the outside.

`split_vault` reads the byte layout documented at the top of `vault/fileformat.py`
independently of the library's parser, so that tamper tests can aim at a field without
trusting the code under test to find it.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from botvault.open_vault import Vault

HEADER_SIZE = 139
MAC_SIZE = 32
RECORD_HEAD_SIZE = 16 + 4 + 24
COUNT_AT = 135
PARAMS_AT = 11  # memory KiB, passes, lanes: three big-endian u32


@dataclass(frozen=True)
class Split:
    header: bytes
    records: list[bytes]
    mac: bytes


def split_vault(data: bytes) -> Split:
    """Header, each record's bytes (head + ciphertext) and the MAC of a well-formed file."""
    (count,) = struct.unpack_from(">I", data, COUNT_AT)
    records = []
    offset = HEADER_SIZE
    for _ in range(count):
        (length,) = struct.unpack_from(">I", data, offset + 16)
        size = RECORD_HEAD_SIZE + length
        records.append(data[offset:offset + size])
        offset += size
    assert offset == len(data) - MAC_SIZE, "not a well-formed vault file"
    return Split(data[:HEADER_SIZE], records, data[offset:])


def join_vault(header: bytes, records: list[bytes], mac: bytes, *,
               fix_count: bool = True) -> bytes:
    """Reassemble a file; with `fix_count` the header's record count matches `records`."""
    if fix_count:
        header = header[:COUNT_AT] + struct.pack(">I", len(records)) + header[COUNT_AT + 4:]
    return header + b"".join(records) + mac


def with_params(data: bytes, memory_kib: int, passes: int, lanes: int) -> bytes:
    return data[:PARAMS_AT] + struct.pack(">III", memory_kib, passes, lanes) + data[PARAMS_AT + 12:]


def with_count(data: bytes, count: int) -> bytes:
    return data[:COUNT_AT] + struct.pack(">I", count) + data[COUNT_AT + 4:]


def write_private(path: Path, data: bytes) -> None:
    """Write `data` as a 0600 file in a 0700 directory (what the vault insists on)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def temp_files(vault_path: Path) -> list[Path]:
    """Temp files a save leaves beside the vault while it runs (`.NAME.tmp-PID-HEX`)."""
    return sorted(vault_path.parent.glob(f".{vault_path.name}.tmp-*"))


def add_generic(v: Vault, name: str, *, note: str = "", secret: str | None = None,
                api_key: str | None = None) -> None:
    """Add a small `generic` entry (short secret: one 256-byte padded record)."""
    v.add(name, exchange="generic", api_key=api_key or f"key-{name}",
          api_secret=secret or f"secret-{name}", general="read-only", withdrawal="none",
          note=note)


def snapshot(v: Vault) -> dict[str, str]:
    """What the tests compare: entry name -> note."""
    return {e.name: e.note for e in v.list()}


def full_snapshot(v: Vault) -> dict[str, tuple[str, str, str, str, str]]:
    """Entry name -> (api_key, secret, general, withdrawal, note)."""
    return {e.name: (e.api_key, e.api_secret.reveal(), e.general.value, e.withdrawal.value,
                     e.note) for e in v.list()}

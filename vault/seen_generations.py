"""The highest generation of each vault seen on this machine, kept to notice a rollback.

Kept outside the vault's directory, in the user's state directory
(`$XDG_STATE_HOME/botvault/generations/<digest>`, by default under `~/.local/state`), one
file per vault id and path (a backup, or a copy elsewhere, has its own history), so that
putting back an older copy of the vault's directory (a restore from a sync tool or a
snapshot, or someone who can write only there) does not also put back the record. Each is
written atomically under its own lock; the number only ever grows.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from . import vault_file
from .errors import FormatError, RollbackError

__all__ = ["check", "note", "record_path", "seen"]

_MAX_DIGITS = 20  # a u64 generation


def _directory() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("botvault", appauthor=False)) / "generations"


def _key(path: Path, vault_id: bytes) -> str:
    return hashlib.blake2b(vault_id + os.fsencode(path), digest_size=16,
                           person=b"botvault-gens").hexdigest()


def record_path(path: Path, vault_id: bytes) -> Path:
    return _directory() / _key(path, vault_id)


def seen(path: Path, vault_id: bytes) -> int:
    """The highest generation recorded for this vault, 0 when none is."""
    record = record_path(path, vault_id)
    try:
        fd = vault_file.open_private(record, os.O_RDONLY)
    except OSError:
        # Missing, or a state directory that cannot be used (not a directory, unreadable):
        # nothing was recorded, and the vault still opens. Permission problems (another
        # user's or a shared record) are not OSErrors and are refused.
        return 0
    with os.fdopen(fd, "rb") as f:
        raw = f.read(_MAX_DIGITS + 2)
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit() or len(text) > _MAX_DIGITS:
        # Fail closed: the record can only ever be a floor, so a damaged one is not ignored.
        raise FormatError(f"the record of generations seen at {record} is damaged",
                          hint=f"if you trust the vault file, remove {record}")
    return int(text)


def check(path: Path, vault_id: bytes, generation: int, *, allow_rollback: bool = False) -> int:
    """Refuse a vault file older than a generation already seen; return the one seen."""
    highest = seen(path, vault_id)
    if generation < highest and not allow_rollback:
        raise RollbackError(
            f"the vault at {path} is generation {generation}, but generation {highest} was "
            "already seen on this machine: an older copy was put in its place",
            hint=f"to go back to it on purpose, run: botvault restore {generation} "
                 "(botvault restore --list shows the backups)")
    return highest


def note(path: Path, vault_id: bytes, generation: int) -> None:
    """Raise the record to `generation`. Best effort: a read-only home (or state dir) must
    not stop a vault from opening, so failing to write is not an error."""
    with contextlib.suppress(OSError), _locked(path, vault_id):
        if generation <= seen(path, vault_id):
            return
        record = record_path(path, vault_id)
        temp = record.with_name(f".{record.name}.tmp-{os.getpid()}")
        fd = vault_file.open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.write(fd, f"{generation}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, record)
        vault_file.fsync_dir(record.parent)


@contextlib.contextmanager
def _locked(path: Path, vault_id: bytes) -> Iterator[None]:
    directory = _directory()
    vault_file.ensure_private_dir(directory)
    fd = vault_file.open_private(directory / f".{_key(path, vault_id)}.lock",
                            os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

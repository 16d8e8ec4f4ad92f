"""Files on disk: permissions, the save lock, atomic durable writes, backups.

Everything that belongs to one vault lives beside it: `PATH.lock`, `PATH.backups/`,
`PATH.nonces`. A save is: lock, check generation (caller), write a temp file with
O_EXCL|O_NOFOLLOW and mode 0600, fsync, verify it (caller's callback), link the old file
into the backups, `os.replace`, fsync the directory. Any failure before the replace leaves
the old file byte-identical; the replace itself is atomic.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from . import private
from .errors import (
    InsecurePermissionsError,
    InvalidInputError,
    NotFoundError,
    PartialWriteError,
    VaultWarning,
)

__all__ = [
    "KEEP_BACKUPS",
    "atomic_write",
    "backup_dir",
    "ensure_private_dir",
    "list_backups",
    "lock",
    "prune_backups",
    "read_head",
    "read_private",
    "replace_file",
    "replace_rekeyed",
]

KEEP_BACKUPS = 5
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BACKUP_NAME = re.compile(r"gen-(\d{12})\.bv")

# Tests replace this to inject ENOSPC/EIO; it must write all of `data` or raise.
_write_all: Callable[[int, bytes], None]


def _default_write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_write_all = _default_write_all


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def backup_dir(path: Path) -> Path:
    return path.with_name(path.name + ".backups")


def check_dir(directory: Path, purpose: str = "the vault's directory") -> None:
    """The vault's directory (or its backups'): a real directory no one else can write to."""
    try:
        private.check_dir(directory, purpose)
    except FileNotFoundError:
        raise NotFoundError(f"directory {directory} does not exist",
                            hint="run: botvault init") from None


def ensure_private_dir(directory: Path, purpose: str = "the vault's directory") -> None:
    """Create `directory` and any missing parents as 0700 whatever the umask; check it."""
    private.make_private_dirs(directory)
    check_dir(directory, purpose)


def open_private(path: Path, flags: int, *, create_mode: int = 0o600,
                 purpose: str = "vault file") -> int:
    """Open a private file of the vault's (see `botvault.private`): never a symlink, never
    blocking on a FIFO or device, owner and mode checked on the open descriptor."""
    return private.open_private_file(path, flags, purpose, create_mode=create_mode)


def read_private(path: Path) -> bytes:
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        raise NotFoundError(f"no vault at {path}",
                            hint="run: botvault init, or pass --vault") from None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes, with the same checks as a full read."""
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        raise NotFoundError(f"no vault at {path}",
                            hint="run: botvault init, or pass --vault") from None
    try:
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """The exclusive save lock of the vault at `path`; the OS releases it if we die."""
    fd = open_private(lock_path(path), os.O_RDWR | os.O_CREAT, purpose="the vault's lock file")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


_BACKUP_TEMP = re.compile(r"\.gen-\d{12}\.bv\.tmp-.*")


def sweep_temp_files(path: Path) -> None:
    """Remove temp files left by saves (and passphrase changes) that were killed. Call with
    the lock held: no other save of this vault can be running, so every such file is
    abandoned (and may be a whole copy of the vault under an old or a new passphrase)."""
    prefix = _temp_prefix(path)
    for child in path.parent.iterdir():
        if child.name.startswith(prefix):
            child.unlink(missing_ok=True)
    directory = backup_dir(path)
    if directory.is_dir() and not directory.is_symlink():
        for child in directory.iterdir():
            if _BACKUP_TEMP.fullmatch(child.name):
                child.unlink(missing_ok=True)


def _write_temp(path: Path, data: bytes) -> Path:
    temp = path.with_name(f"{_temp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = private.create_private_file(temp, "vault file")
    except FileExistsError:
        # A fresh random name that exists was planted (e.g. a symlink): never write there.
        raise InsecurePermissionsError(
            f"something already exists at the temporary path {temp}",
            hint=f"inspect and remove it: ls -l {temp}") from None
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return temp


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably, for a file outside the vault (no lock,
    backups or read-back): a fresh private temp file beside it, fsynced, renamed over it,
    the directory fsynced. A failure leaves the old file, or none, and no temp file."""
    temp = _write_temp(path, data)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, *, verify: Callable[[bytes], None],
                 backup_as: int | None, create: bool = False) -> None:
    """Replace (or with `create`, create without overwriting) `path` with `data`.

    `verify` gets the bytes read back from the fsynced temp file. `backup_as` is the
    generation of the file being replaced; it is linked into the backups first.
    Call with the vault's lock held.
    """
    check_dir(path.parent)  # it may have been loosened since the vault was opened
    sweep_temp_files(path)
    temp = _write_temp(path, data)
    try:
        verify(read_private(temp))
        if create:
            os.link(temp, path)  # fails if a vault appeared meanwhile: never overwrite one
            temp.unlink()
        else:
            if backup_as is not None:
                _link_backup(path, backup_as)
            os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir_after_replace(path.parent)
    if backup_as is not None:
        prune_backups(path)


def _fsync_dir_after_replace(directory: Path) -> None:
    """After the rename the new file is what everyone reads: the save has happened and must
    not be reported as failed. If the directory cannot be synced, say durability is in
    doubt instead (a power cut before the next sync could bring back the previous file)."""
    try:
        fsync_dir(directory)
    except OSError as exc:
        warnings.warn(f"saved, but syncing {directory} failed ({exc.strerror}); a power cut "
                      "now could bring back the previous version", VaultWarning, stacklevel=3)


def replace_rekeyed(path: Path, data: bytes, *, verify: Callable[[bytes], None],
                    backups: list[tuple[int, bytes]]) -> None:
    """Replace the vault and its whole set of backups with copies under a new key.

    Call with the vault's lock held. No moment, a kill included, has generations under
    both keys: the new files are written as temp files first (never generations: the next
    save removes them), then every old backup is removed, then the vault is replaced (the
    commit point), then the temp files become the backups. Before the commit a failure
    raises and leaves the old vault; after it nothing raises (a backup that cannot be
    put in place is removed, with a warning), so no failure is reported for a change made.
    """
    check_dir(path.parent)
    sweep_temp_files(path)
    directory = backup_dir(path)
    ensure_private_dir(directory)
    staged: list[tuple[int, Path, Path]] = []  # (generation, temp, final)
    temp = _write_temp(path, data)
    try:
        verify(read_private(temp))
        for generation, copy in backups:
            final = directory / _backup_name(generation)
            staged.append((generation, _write_temp(final, copy), final))
            _check_readback(staged[-1][1], copy)
    except BaseException:
        _remove_quietly([temp, *(t for _, t, _ in staged)])
        raise
    removed: list[int] = []
    try:
        for generation, old in list_backups(path):
            old.unlink()
            removed.append(generation)
        fsync_dir(directory)
        os.replace(temp, path)
    except BaseException as exc:
        _remove_quietly([temp, *(t for _, t, _ in staged)])
        if removed and isinstance(exc, OSError):
            raise PartialWriteError(
                f"the vault was not changed ({exc.strerror or type(exc).__name__}), but its "
                f"backups of generation {', '.join(map(str, sorted(removed)))} were already "
                "removed", hint="fix the cause and run the command again") from None
        raise
    _fsync_dir_after_replace(path.parent)
    for generation, staged_temp, final in staged:
        try:
            os.replace(staged_temp, final)
        except OSError as exc:
            _remove_quietly([staged_temp])
            warnings.warn(f"the backup of generation {generation} could not be kept "
                          f"({exc.strerror}) and was removed", VaultWarning, stacklevel=3)
    _fsync_dir_after_replace(directory)


def _check_readback(path: Path, data: bytes) -> None:
    if read_private(path) != data:
        raise OSError(errno.EIO, "a file read back differs from what was written")


def _remove_quietly(paths: list[Path]) -> None:
    for leftover in paths:
        with contextlib.suppress(OSError):
            leftover.unlink(missing_ok=True)


def _backup_name(generation: int) -> str:
    return f"gen-{generation:012d}.bv"


def _link_backup(path: Path, generation: int) -> None:
    directory = backup_dir(path)
    ensure_private_dir(directory, "the backups directory")
    target = directory / _backup_name(generation)
    with contextlib.suppress(FileExistsError):
        # A hard link costs no copy and keeps the replaced inode as the backup.
        os.link(path, target, follow_symlinks=False)
    fsync_dir(directory)


def list_backups(path: Path) -> list[tuple[int, Path]]:
    """(generation, file) of each backup, newest first."""
    directory = backup_dir(path)
    if not os.path.lexists(directory):
        return []
    check_dir(directory, "the backups directory")  # never a symlink to someone else's files
    found = []
    for child in directory.iterdir():
        m = _BACKUP_NAME.fullmatch(child.name)
        if m:
            found.append((int(m.group(1)), child))
    return sorted(found, reverse=True)


def prune_backups(path: Path, keep: int = KEEP_BACKUPS) -> None:
    for _, old in list_backups(path)[keep:]:
        old.unlink(missing_ok=True)


def backup_path(path: Path, generation: int) -> Path:
    for gen, file in list_backups(path):
        if gen == generation:
            return file
    if generation < 0:
        raise InvalidInputError("a generation is a non-negative number")
    raise NotFoundError(f"no backup of generation {generation}",
                        hint="see the available ones with: botvault restore --list")

"""The nonce state file and the operating system: opening and creating it safely (no
symlinks, no one else's file, no file others can write to, a new file published only once
fully written and synced), and what the OS provides: durable syncs and a boot id (the
defaults of NonceStore's `sync` and `boot_id`; tests inject their own)."""

from __future__ import annotations

import fcntl
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from .. import private
from ..errors import FormatError
from .layout import initial_bytes

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_PURPOSE = "the nonce state file"


def check_file(path: Path, fd: int) -> None:
    """Refuse anything but a regular file of ours that no one else can write to (the state
    is not secret, so others may read it)."""
    private.refuse(private.file_problem(path, os.fstat(fd), _PURPOSE, private.FileRule.STATE))


def open_existing(path: Path, *, writable: bool = True) -> int:
    """The state file at `path`, checked by the one private-file rule (never a symlink, FIFO
    or device; readable by others allowed, never writable). Read-only for peeking on a
    read-only file system."""
    flags = os.O_RDWR if writable else os.O_RDONLY
    return private.open_private_file(path, flags, _PURPOSE, rule=private.FileRule.STATE)


def create(path: Path, content: bytes, sync: Callable[[int], None]) -> None:
    """Publish a fully written, synced file at `path` unless one exists already.

    link() rather than rename(): a rename would replace a file that another process created
    meanwhile and may already be handing out nonces from.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = private.create_private_file(tmp, _PURPOSE, flags=os.O_RDWR)
    try:
        os.pwrite(fd, content, 0)
        sync(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
    finally:
        os.close(fd)
        os.unlink(tmp)
    dfd = os.open(path.parent, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def open_or_create(path: Path, boot: str, now_ns: int, sync: Callable[[int], None]) -> int:
    for _ in range(8):
        try:
            return open_existing(path)
        except FileNotFoundError:
            create(path, initial_bytes(boot, now_ns), sync)
    raise FormatError(f"{path}: the nonce state file keeps disappearing",
                      hint="another program is deleting it")


# -- what the operating system provides ----------------------------------------------------

def default_sync(fd: int) -> None:
    """Make everything written to `fd` durable (F_FULLFSYNC on macOS: fsync alone is not)."""
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is not None:
        try:
            fcntl.fcntl(fd, full)
        except OSError:
            pass  # not every file system has it; plain fsync below is the best left
        else:
            return
    os.fsync(fd)


def default_boot_id() -> str:
    """A string that changes at every boot: Linux's boot_id, macOS's boot session."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        if sys.platform != "darwin":
            raise
    return _darwin_boot_session()


def _darwin_boot_session() -> str:
    # Imported here: macOS only, and ctypes would add to every start-up on Linux.
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    for name in (b"kern.bootsessionuuid", b"kern.boottime"):
        buf = ctypes.create_string_buffer(64)
        size = ctypes.c_size_t(len(buf))
        if libc.sysctlbyname(name, buf, ctypes.byref(size), None, ctypes.c_size_t(0)) == 0:
            return name.decode() + ":" + buf.raw[:size.value].hex()
    raise OSError(ctypes.get_errno(), "cannot read the boot session from sysctl")

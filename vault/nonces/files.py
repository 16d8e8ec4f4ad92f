"""Opening and creating the nonce state file safely: no symlinks, no one else's file, no
file others can write to, and a new file published only once fully written and synced."""

from __future__ import annotations

import os
import secrets
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


def open_existing(path: Path) -> int:
    return private.open_private_file(path, os.O_RDWR, _PURPOSE, rule=private.FileRule.STATE)


def create(path: Path, content: bytes, sync: Callable[[int], None]) -> None:
    """Publish a fully written, synced file at `path` unless one exists already.

    link() rather than rename(): a rename would replace a file that another process created
    meanwhile and may already be handing out nonces from.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only clear bits; this also undoes an odd one
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

"""A disk that really fills up: a small tmpfs mounted for one test (mounting needs root on
Linux, as in CI; elsewhere the test skips)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["small_tmpfs"]


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str, *, lazy_unmount: bool = False) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (created here). A failed mount or unmount fails
    the test; `lazy_unmount` detaches it even while a process still holds a file there."""
    mount_cmd, umount_cmd = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or not sys.platform.startswith("linux") or not mount_cmd or \
            not umount_cmd:
        pytest.skip("a real full disk needs root on Linux, to mount a small tmpfs")
    where.mkdir()
    subprocess.run([mount_cmd, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run([umount_cmd, *(["-l"] if lazy_unmount else []), str(where)],
                       check=True)

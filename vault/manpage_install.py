"""Writing a file botvault ships to the user (the man page) into a directory they name."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["install_text"]


def install_text(directory: Path, name: str, text: str) -> Path:
    """Write `text` to `directory`/`name`, atomically and durably (temp file, fsync,
    rename, directory fsync), creating `directory` private when missing; the target path.
    A failure leaves the old file, or none, and no temp file."""
    from .vault_file import ensure_private_dir, fsync_dir

    ensure_private_dir(directory)
    target = directory / name
    tmp = target.with_name(f".{name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return target

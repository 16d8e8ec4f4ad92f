"""Writing a file botvault ships to the user (the man page) into a directory they name."""

from __future__ import annotations

from pathlib import Path

__all__ = ["install_text"]


def install_text(directory: Path, name: str, text: str) -> Path:
    """Write `text` to `directory`/`name`, atomically and durably (temp file, fsync,
    rename, directory fsync), creating `directory` private when missing; the target path.
    A failure leaves the old file, or none, and no temp file."""
    from .vault_file import ensure_private_dir, replace_file

    ensure_private_dir(directory)
    target = directory / name
    replace_file(target, text.encode("utf-8"))
    return target

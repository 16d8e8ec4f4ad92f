"""Files the tests hand to botvault: written whole, with the mode asked for."""

from __future__ import annotations

from pathlib import Path

__all__ = ["private"]


def private(path: Path, data: str | bytes, mode: int = 0o600) -> Path:
    """`path` holding exactly `data` (a passphrase file: its text and a newline), `mode`."""
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path

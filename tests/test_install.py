"""`botvault.manpage_install`: a file written for the user (the man page), atomically."""

from __future__ import annotations

import stat
from pathlib import Path

from botvault.manpage_install import install_text


def test_install_creates_a_private_dir_and_replaces_whole_files(tmp_path: Path) -> None:
    target_dir = tmp_path / "man" / "man1"
    first = install_text(target_dir, "botvault.1", "one\n")
    assert first == target_dir / "botvault.1"
    assert stat.S_IMODE(target_dir.stat().st_mode) == 0o700
    second = install_text(target_dir, "botvault.1", "two\n")
    assert second.read_text() == "two\n"
    assert sorted(p.name for p in target_dir.iterdir()) == ["botvault.1"]  # no temp left

"""Removing the plaintext copies doctor finds: only the lines that hold a stored secret.

A bot's .env holds more than the key pair (PAIR=, LEVERAGE=, comments): deleting the file
would lose the user's settings, so only the lines holding a secret that is in the vault go.
Only line-based files (.env and the like): a JSON config would be broken by removing a line,
and a shell history is rewritten by a running shell, so those are left to the user.
The file is replaced atomically and durably, readable by its owner only (it held a secret).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..entries import Entry
from .plaintext import HISTORY_FILES, plaintext_hits, secret_needles

__all__ = ["LineRemoval", "removable", "remove_secret_lines", "secret_line_removals"]

_LINE_FILES = (".env", ".env.*", "*.env")


@dataclass(frozen=True)
class LineRemoval:
    """The lines of one file that hold a stored secret (numbers from 1)."""

    file: Path
    lines: tuple[int, ...]
    entries: tuple[str, ...]


def removable(file: Path) -> bool:
    """Whether doctor may remove lines from `file`: an env file, not JSON, not a history."""
    if any(str(file).endswith(h) for h in HISTORY_FILES):
        return False
    return any(fnmatch.fnmatchcase(file.name, p) for p in _LINE_FILES)


def secret_line_removals(entries: list[Entry], home: Path, cwd: Path,
                         scan: tuple[Path, ...] = ()) -> list[LineRemoval]:
    """What `remove_secret_lines` would remove, per file, from the places doctor searches."""
    by_file: dict[Path, tuple[set[int], set[str]]] = {}
    for name, where in plaintext_hits(entries, home, cwd, scan).items():
        for file, lines in where.items():
            if removable(file):
                found = by_file.setdefault(file, (set(), set()))
                found[0].update(lines)
                found[1].add(name)
    return [LineRemoval(f, tuple(sorted(lines)), tuple(sorted(names)))
            for f, (lines, names) in sorted(by_file.items())]


def remove_secret_lines(file: Path, entries: list[Entry]) -> int:
    """Rewrite `file` without the lines that hold the secret of one of `entries`; how many
    lines were removed. Everything else is kept byte for byte."""
    from ..vault_file import replace_file

    needles = [n for e in entries for n in secret_needles(e.api_secret.reveal())]
    st = os.lstat(file)
    if not stat.S_ISREG(st.st_mode):
        return 0
    data = file.read_bytes()
    kept = [line for line in data.splitlines(keepends=True)
            if not any(n in line for n in needles)]
    removed = len(data.splitlines()) - len(kept)
    if not removed:
        return 0
    replace_file(file, b"".join(kept))
    return removed

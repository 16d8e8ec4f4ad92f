"""Plaintext copies of stored secrets in .env files, JSON configs and shell histories."""

from __future__ import annotations

import fnmatch
import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..entries import Entry
from .files import lstat_or_none
from .finding import Finding

__all__ = ["HISTORY_FILES", "JSON_MAX_BYTES", "MIN_SECRET_SEARCHED", "SCAN_MAX_BYTES",
           "check_plaintext_copies", "plaintext_hits", "recorded_sources", "searched_places",
           "secret_needles"]

SCAN_MAX_BYTES = 5 * 1024 * 1024  # read at most this much of one file
JSON_MAX_BYTES = 1024 * 1024  # a JSON file bigger than this is not a bot config
MIN_SECRET_SEARCHED = 8  # shorter secrets would match by chance everywhere
_MAX_SUBDIRS = 256
_MAX_DIR_ENTRIES = 10_000

_ENV_PATTERNS = (".env", ".env.*", "*.env")
_JSON_PATTERNS = ("*.json",)
HISTORY_FILES = (".bash_history", ".zsh_history", ".zhistory", ".local/share/fish/fish_history",
                  ".history", ".sh_history", ".python_history")


def _shown(path: Path, home: Path) -> str:
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


def _children(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as it:
            # Capped: a huge directory (Downloads) must not make doctor slow.
            return [Path(e.path) for _, e in zip(range(_MAX_DIR_ENTRIES), it, strict=False)]
    except OSError:
        return []


def _is_dir(path: Path) -> bool:
    st = lstat_or_none(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def _matching(directories: Iterable[Path], patterns: tuple[str, ...]) -> Iterator[Path]:
    """Files named like `patterns` in each directory and in its direct subdirectories."""
    for directory in directories:
        subdirs = [c for c in _children(directory) if _is_dir(c)][:_MAX_SUBDIRS]
        for d in (directory, *subdirs):
            for child in _children(d):
                if any(fnmatch.fnmatchcase(child.name, p) for p in patterns):
                    yield child


def _scanned_files(home: Path, cwd: Path, recorded: Iterable[Path] = (),
                   scan: Iterable[Path] = ()) -> list[tuple[Path, bool]]:
    """Every place a pasted secret tends to end up, each with: is it a JSON config?
    `recorded`: the files `import` read (from the entries); `scan`: `doctor --scan` dirs."""
    scan = tuple(scan)
    files = [(f, f.suffix == ".json") for f in recorded]
    files += [(f, False) for f in _matching((cwd, home, *scan), _ENV_PATTERNS)]
    files += [(home / h, False) for h in HISTORY_FILES]
    files += [(f, True) for f in _matching((cwd, *scan), _JSON_PATTERNS)]
    seen: set[str] = set()
    unique = []
    for file, is_json in files:
        key = os.path.abspath(file)
        if key not in seen:
            seen.add(key)
            unique.append((file, is_json))
    return unique


def _read_capped(path: Path, *, is_json: bool) -> bytes | None:
    """The start of a regular file (at most 5 MiB; a JSON file bigger than 1 MiB is not a
    bot config and is skipped); None when it is unreadable or not a regular file."""
    try:
        # O_NONBLOCK: a FIFO named like a config must not hang doctor.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if is_json and st.st_size > JSON_MAX_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(SCAN_MAX_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)


def secret_needles(secret: str) -> set[bytes]:
    """The secret as it would appear in a file: raw, and escaped inside a JSON string."""
    raw = secret.encode("utf-8", "surrogatepass")
    escaped = json.dumps(secret)[1:-1].encode("ascii")
    return {raw, escaped}


def _lines_containing(data: bytes, needles: set[bytes]) -> list[int]:
    """Line numbers (from 1) of every occurrence. Linear in the size of `data` per needle:
    newlines are counted from the previous hit, not from the start of the file each time
    (a history holding the secret on 45,000 lines took minutes that way)."""
    lines = set()
    for needle in needles:
        line, counted_to = 1, 0
        start = data.find(needle)
        while start >= 0:
            line += data.count(b"\n", counted_to, start)
            counted_to = start
            lines.add(line)
            start = data.find(needle, start + 1)
    return sorted(lines)


def searched_places(home: Path, cwd: Path, recorded: Iterable[Path] = (),
                    scan: Iterable[Path] = ()) -> str:
    """Where `check_plaintext_copies` looks, in words, for doctor's output."""
    places = [f".env files and JSON configs in {_shown(cwd, home)} and one level down",
              f".env files in {_shown(home, home)} and one level down", "your shell histories"]
    places += [f".env files and JSON configs in {_shown(d, home)} and one level down (--scan)"
               for d in scan]
    shown = sorted({_shown(f, home) for f in recorded})
    if shown:
        places.append("the file(s) keys were imported from: " + ", ".join(shown))
    return "; ".join(places)


def recorded_sources(entries: Iterable[Entry]) -> list[Path]:
    """The plaintext files `import` read these entries from, as recorded in the vault."""
    return sorted({Path(e.imported_from) for e in entries if e.imported_from})


def plaintext_hits(entries: list[Entry], home: Path, cwd: Path,
                   scan: Iterable[Path] = ()) -> dict[str, dict[Path, list[int]]]:
    """{entry name: {file: line numbers}} of every stored secret found in plain text."""
    searched = [(e, secret_needles(e.api_secret.reveal())) for e in entries
                if len(e.api_secret) >= MIN_SECRET_SEARCHED]
    hits: dict[str, dict[Path, list[int]]] = {}
    for file, is_json in _scanned_files(home, cwd, recorded_sources(entries), scan):
        data = _read_capped(file, is_json=is_json)
        if not data:
            continue
        for entry, needles in searched:
            lines = _lines_containing(data, needles)
            if lines:
                hits.setdefault(entry.name, {})[file] = lines
    return hits


def check_plaintext_copies(entries: list[Entry], home: Path, cwd: Path,
                           scan: Iterable[Path] = ()) -> list[Finding]:
    """Secrets of stored entries (current and retired) found in .env files, shell history,
    JSON configs, the files keys were imported from and the `--scan` folders; reported as
    file:line and entry name only, with where doctor searched."""
    scan = tuple(scan)
    hits = plaintext_hits(entries, home, cwd, scan)
    searched = "Searched: " + searched_places(home, cwd, recorded_sources(entries), scan) + "."
    if not hits:
        return [Finding("plaintext-copies", "ok",
                        "no plaintext copy of a stored secret in the places searched",
                        searched, None)]
    by_name = {e.name: e for e in entries}
    return [_plaintext_finding(by_name[name],
                               [f"{_shown(file, home)}:{line}" for file, lines in where.items()
                                for line in lines], searched)
            for name, where in sorted(hits.items())]


_REMOVE = ("botvault doctor --remove-secret-lines (removes only the lines holding the secret "
           "from .env files; JSON configs and shell histories you edit yourself, with the "
           "shell closed)")


def _plaintext_finding(entry: Entry, where: list[str], searched: str) -> Finding:
    if entry.retired:
        return Finding(
            "plaintext-copies", "warn",
            f"the secret of retired key {entry.name} is still in plaintext on disk",
            "This key pair was replaced, but a copy of its secret is still readable in the "
            "files listed. If the old key still exists on the exchange, anyone who reads "
            f"those files can use it. {searched}",
            f"delete the old key on the exchange, then: {_REMOVE}", tuple(where))
    return Finding(
        "plaintext-copies", "fail",
        f"the secret of {entry.name} is stored in plaintext outside the vault",
        "The vault encrypts this secret, but a plain copy is readable in the files listed: "
        "anything that can read your files (a backup, a synced folder, a compromised "
        f"program) can use the key. Treat it as exposed. {searched}",
        f"{_REMOVE}; then create a new key on the exchange and: botvault rotate {entry.name}",
        tuple(where))

"""The gateway's audit log: one JSON line per request, beside the vault, rotated by size.

`VAULT.audit.jsonl` holds the newest lines, `VAULT.audit.jsonl.1` the ones before the last
rotation (one generation is kept: the log bounds its own size). The gateway appends with
`append_audit`; `botvault grant log` reads with `read_audit`.

A line holds only the fields in `FIELDS`, each a short scalar: a record carrying anything
else is refused, so a secret or an order body cannot reach the log by a caller's mistake.
Each line is written with one `write` on an O_APPEND descriptor under an exclusive flock
(the same lock decides rotation), then fsync'ed: a line is whole or absent, and a line the
call reported written survives a crash.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import vault_file
from .errors import InvalidInputError, VaultWarning

__all__ = ["FIELDS", "MAX_BYTES", "append_audit", "audit_path", "read_audit"]

MAX_BYTES = 1024 * 1024  # rotate when the current file would grow past this
FIELDS = frozenset({"time", "grant", "entry", "exchange", "method", "endpoint", "outcome",
                    "upstream_status", "duration_ms"})
_MAX_TEXT = 256
_MAX_LINE = 4096
_O_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


def audit_path(vault_path: str | os.PathLike[str]) -> Path:
    """`VAULT.audit.jsonl` beside the vault file."""
    path = Path(os.path.abspath(os.fspath(vault_path)))
    return path.with_name(path.name + ".audit.jsonl")


def _rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as it is written, or InvalidInputError: only FIELDS, only short scalars."""
    extra = sorted(str(k) for k in record if k not in FIELDS)
    if extra:
        # Names only: the values of unknown fields may be exactly what must not be logged.
        raise InvalidInputError(f"an audit record may not carry {', '.join(extra)[:200]}")
    doc: dict[str, Any] = {}
    for key, value in record.items():
        if value is None or isinstance(value, (bool, int)):
            doc[key] = value
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInputError(f"audit field {key!r} must be a finite number")
            doc[key] = value
        elif isinstance(value, str):
            if len(value) > _MAX_TEXT:
                raise InvalidInputError(f"audit field {key!r} is longer than {_MAX_TEXT} "
                                        "characters")
            doc[key] = value
        else:
            raise InvalidInputError(f"audit field {key!r} must be text, a number or null")
    when = doc.get("time")
    if when is None:
        doc["time"] = _iso(time.time())
    elif isinstance(when, (int, float)) and not isinstance(when, bool):
        doc["time"] = _iso(float(when))
    return doc


def _encode(record: Mapping[str, Any]) -> bytes:
    # ensure_ascii escapes every control character: a value cannot start a second line.
    line = json.dumps(_clean(record), ensure_ascii=True, separators=(",", ":"),
                      sort_keys=True).encode("ascii") + b"\n"
    if len(line) > _MAX_LINE:
        raise InvalidInputError("an audit record is too large")
    return line


def _same_file(path: Path, fd: int) -> bool:
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        return False
    st = os.fstat(fd)
    return (current.st_dev, current.st_ino) == (st.st_dev, st.st_ino)


def _open_locked(path: Path) -> int:
    """The current log, created 0600 if missing, flocked, and still the file at `path`.

    A writer that opened the file just before another one rotated it would append to the
    rotated file; it checks after taking the lock and opens again.
    """
    for _ in range(10):
        fd = vault_file.open_private(path, _O_APPEND_FLAGS)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(path, fd):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OSError(f"could not lock the audit log {path}")


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):
        # A short write on a regular file means the disk is full: say so, keep nothing torn.
        os.ftruncate(fd, os.fstat(fd).st_size - written)
        raise OSError(28, "No space left on device")


def append_audit(vault_path: str | os.PathLike[str], record: Mapping[str, Any], *,
                 max_bytes: int = MAX_BYTES) -> None:
    """Append one record as a JSON line to the vault's audit log, durably.

    Before a line would take the file past `max_bytes`, the file becomes `.1` (replacing the
    previous `.1`) and a new one is started. Refuses (InvalidInputError) a record with any
    field outside FIELDS or a value that is not a short scalar; a missing `time` is now, a
    numeric one (epoch seconds) is written as ISO 8601 UTC.
    """
    line = _encode(record)
    path = audit_path(vault_path)
    vault_file.check_dir(path.parent)
    fd = _open_locked(path)
    try:
        size = os.fstat(fd).st_size
        if size and size + len(line) > max_bytes:
            os.replace(path, _rotated(path))
            vault_file.fsync_dir(path.parent)
            os.close(fd)  # releases the lock on the rotated file; the new one is locked next
            fd = -1
            fd = _open_locked(path)
        _write_all(fd, line)
        os.fsync(fd)
    finally:
        if fd >= 0:
            os.close(fd)


def _read_lines(path: Path) -> list[bytes]:
    try:
        fd = vault_file.open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "rb") as f:
        return f.read().splitlines()


def read_audit(vault_path: str | os.PathLike[str], grant: str | None = None
               ) -> list[dict[str, Any]]:
    """Every record of the log, oldest first (the rotated file, then the current one);
    only `grant`'s when given. A line that is not a JSON object (torn by a crash before
    its fsync) is skipped with a VaultWarning saying how many were."""
    path = audit_path(vault_path)
    vault_file.check_dir(path.parent)
    records: list[dict[str, Any]] = []
    bad = 0
    for line in _read_lines(_rotated(path)) + _read_lines(path):
        try:
            doc = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(doc, dict):
            bad += 1
            continue
        if grant is None or doc.get("grant") == grant:
            records.append(doc)
    if bad:
        warnings.warn(f"skipped {bad} malformed line{'s' if bad != 1 else ''} in {path}",
                      VaultWarning, stacklevel=2)
    return records

"""The gateway's audit log: JSON lines beside the vault, in segments kept for a retention.

`VAULT.audit.jsonl` holds the newest lines; when it would grow past a segment's size it
becomes `VAULT.audit.jsonl.<ns>` (the time of the rotation in nanoseconds) and a new one
is started. Segments are removed oldest first once they are older than the retention's
days or the log is larger than its megabytes (`Retention`). The gateway writes through
`append_lines` (its audit child, `gateway.audit_writer`); `botvault grant log` reads with
`read_audit`.

What makes the lines worth keeping is in the gateway: a forwarded request's line is
written (and fsync'ed) before the request leaves, phase `sent`, and completed by a `done`
line with the same `seq` when the answer is back, so a kill in between leaves `sent,
outcome unknown`, never nothing; refused and unauthenticated traffic is counted and
written as `summary` lines, one per interval and reason, so no amount of it can push a
forwarded request's line out of the retention.

A line holds only the fields in `FIELDS`, each a short scalar: a record carrying anything
else is refused, so a secret or an order body cannot reach the log by a caller's mistake.
Lines are written with one `write` on an O_APPEND descriptor under an exclusive flock (the
same lock decides rotation), then fsync'ed: a line is whole or absent, and a line the call
reported written survives a crash.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import vault_file
from .errors import InvalidInputError, VaultWarning

__all__ = ["FIELDS", "MAX_BYTES", "UNKNOWN_OUTCOME", "AuditAppender", "Retention", "append_audit",
           "append_lines", "audit_path", "encode_line", "read_audit", "segments", "sync_audit"]

MAX_BYTES = 1024 * 1024  # a segment: rotate when the current file would grow past this
FIELDS = frozenset({"time", "grant", "entry", "exchange", "method", "endpoint", "outcome",
                    "upstream_status", "duration_ms", "phase", "seq", "count", "interval_s"})
UNKNOWN_OUTCOME = "sent, outcome unknown"  # a `sent` line that no `done` line completed


@dataclass(frozen=True)
class Retention:
    """How long rotated segments are kept: at most `days` old and `max_bytes` in all."""

    days: float = 90.0
    max_bytes: int = 100 * 1024 * 1024
_MAX_TEXT = 256
_MAX_LINE = 4096
_O_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


def audit_path(vault_path: str | os.PathLike[str]) -> Path:
    """`VAULT.audit.jsonl` beside the vault file."""
    path = Path(os.path.abspath(os.fspath(vault_path)))
    return path.with_name(path.name + ".audit.jsonl")


def _suffix(path: Path, segment: Path) -> int | None:
    tail = segment.name[len(path.name) + 1:]
    return int(tail) if segment.name.startswith(path.name + ".") and tail.isdigit() else None


def segments(vault_path: str | os.PathLike[str]) -> list[Path]:
    """The rotated segments of the log, oldest first (`.1` of older versions first)."""
    return _segments_of(audit_path(vault_path))


def _segments_of(path: Path) -> list[Path]:
    found = [(n, p) for p in path.parent.glob(path.name + ".*")
             if (n := _suffix(path, p)) is not None]
    return [p for _, p in sorted(found)]


def _prune(path: Path, retention: Retention) -> None:
    """Remove segments, oldest first, beyond the retention's age or total size."""
    olds = _segments_of(path)
    sizes = {p: p.stat().st_size for p in olds}
    total = sum(sizes.values()) + path.stat().st_size
    horizon = time.time() - retention.days * 86400
    for old in olds:
        if total <= retention.max_bytes and old.stat().st_mtime >= horizon:
            break
        old.unlink()
        total -= sizes[old]


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


def encode_line(record: Mapping[str, Any]) -> bytes:
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


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):
        # A short write on a regular file means the disk is full: say so, keep nothing torn.
        os.ftruncate(fd, os.fstat(fd).st_size - written)
        raise OSError(28, "No space left on device")


def append_audit(vault_path: str | os.PathLike[str], record: Mapping[str, Any], *,
                 max_bytes: int = MAX_BYTES, retention: Retention | None = None) -> None:
    """Append one record as a JSON line to the vault's audit log, durably (`append_lines`).

    Refuses (InvalidInputError) a record with any field outside FIELDS or a value that is
    not a short scalar; a missing `time` is now, a numeric one (epoch seconds) is written as
    ISO 8601 UTC.
    """
    append_lines(vault_path, [record], max_bytes=max_bytes, retention=retention)


def append_lines(vault_path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]], *,
                 max_bytes: int = MAX_BYTES, retention: Retention | None = None,
                 durable: bool = True) -> None:
    """Append records as JSON lines with one write (a batch is whole or absent) and, when
    `durable`, one fdatasync, which also makes every earlier line of the file durable.
    Before the lines would take the file past `max_bytes`, it becomes a segment (synced
    first) and a new one is started; segments beyond `retention` (default: `Retention()`)
    are removed then."""
    appender = AuditAppender(vault_path, max_bytes=max_bytes, retention=retention)
    try:
        appender.append(records, durable=durable)
    finally:
        appender.close()


class AuditAppender:
    """`append_lines` for a writer that lives long (the gateway's audit child): the log's
    descriptor is kept between batches, so a batch costs an flock, an lstat that checks the
    path still names the kept file (another writer may have rotated it: then it is opened
    again), an fstat for the size, the write and the sync."""

    def __init__(self, vault_path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES,
                 retention: Retention | None = None) -> None:
        self._path = audit_path(vault_path)
        self._max_bytes = max_bytes
        self._retention = retention or Retention()
        self._fd = -1

    def append(self, records: Iterable[Mapping[str, Any]], *, durable: bool = True) -> None:
        data = b"".join(encode_line(r) for r in records)
        if not data:
            return
        path = self._path
        try:
            fd = self._locked()
            size = os.fstat(fd).st_size
            if size and size + len(data) > self._max_bytes:
                _sync(fd)  # lines written without a sync of their own go with the segment
                os.replace(path, path.with_name(f"{path.name}.{time.time_ns()}"))
                vault_file.fsync_dir(path.parent)
                self.close()  # releases the lock on the segment; the new file is locked next
                fd = self._locked()
                _prune(path, self._retention)
            _write_all(fd, data)
            if durable:
                _sync(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            self.close()  # opened afresh, with every check, by the next batch
            raise

    def _locked(self) -> int:
        """The current log, created 0600 if missing, flocked, and still the file at the
        path: a writer that opened it just before another one rotated it would append to
        the rotated file, so it checks after taking the lock and opens again."""
        for _ in range(10):
            if self._fd < 0:
                vault_file.check_dir(self._path.parent)
                self._fd = vault_file.open_private(self._path, _O_APPEND_FLAGS)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            if _same_file(self._path, self._fd):
                return self._fd
            self.close()
        raise OSError(f"could not lock the audit log {self._path}")

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # releases the flock


def sync_audit(vault_path: str | os.PathLike[str]) -> None:
    """Make every line of the current file durable (lines appended with durable=False)."""
    path = audit_path(vault_path)
    try:
        fd = vault_file.open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        _sync(fd)
    finally:
        os.close(fd)


def _sync(fd: int) -> None:
    # fdatasync flushes the data and the size that reading it back needs, not the times.
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _read_lines(path: Path) -> list[bytes]:
    try:
        fd = vault_file.open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "rb") as f:
        return f.read().splitlines()


def read_audit(vault_path: str | os.PathLike[str], grant: str | None = None
               ) -> list[dict[str, Any]]:
    """Every record of the log, oldest first (the segments, then the current file); only
    `grant`'s when given. A forwarded request's `sent` line and its `done` line read as
    one record (with the outcome of `done`); a `sent` line never completed reads with the
    outcome "sent, outcome unknown" (the gateway stopped while the exchange had it). A line
    that is not a JSON object (torn by a crash before its fsync) is skipped with a
    VaultWarning saying how many were."""
    path = audit_path(vault_path)
    vault_file.check_dir(path.parent)
    records: list[dict[str, Any]] = []
    sent: dict[str, dict[str, Any]] = {}
    bad = 0
    lines = [line for segment in segments(vault_path) for line in _read_lines(segment)]
    for line in lines + _read_lines(path):
        try:
            doc = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(doc, dict):
            bad += 1
            continue
        seq, phase = doc.get("seq"), doc.pop("phase", None)
        if phase == "done" and isinstance(seq, str) and seq in sent:
            opened = sent.pop(seq)
            opened.update({k: v for k, v in doc.items() if k not in ("time", "seq")})
            continue
        if phase == "sent" and isinstance(seq, str):
            doc["outcome"] = UNKNOWN_OUTCOME
            sent[seq] = doc
        elif phase == "summary":
            doc["outcome"] = f"{doc.get('outcome')} x{doc.get('count')}"
        if grant is None or doc.get("grant") == grant:
            records.append(doc)
    if bad:
        warnings.warn(f"skipped {bad} malformed line{'s' if bad != 1 else ''} in {path}",
                      VaultWarning, stacklevel=2)
    return records

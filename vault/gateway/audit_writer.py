"""Writing the gateway's audit lines from a child process, off the gateway's interpreter.

Done on a thread of the gateway, the fsync'ed appends fight the event loop for the
interpreter lock (bench/bench_gateway.py measured half a millisecond on every request). The
gateway instead writes each record as a JSON line to this child's stdin. The child appends
whatever has arrived as one batch (one write, one fsync: `botvault.audit.append_lines`)
and then acknowledges, on its stdout, each record that asked for it (`ack`): `ok SEQ` once
it is durable, `fail SEQ REASON` when it could not be written. The gateway waits for that
before a request leaves (a request's `sent` line); `done` lines and summaries do not wait.
If the gateway dies, the child still writes what reached the pipe, then exits at end of
input.

    python -m botvault.gateway.audit_writer VAULT_PATH DAYS MAX_BYTES   # records on stdin
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import fast_json

__all__ = ["AuditFailed", "AuditProcess", "main"]

_ACK_TIMEOUT = 10.0
_WARN_EVERY = 60.0
_SYNC_AFTER = 1.0  # seconds of quiet before lines written without a sync are synced


class AuditFailed(Exception):
    """A record that had to be durable before the request leaves could not be written."""


class AuditProcess:
    """The gateway's end: start the child, hand it records, close and wait for it."""

    def __init__(self, vault_path: Path, *, keep_days: float = 90.0,
                 max_bytes: int = 100 * 1024 * 1024) -> None:
        self.vault_path = vault_path
        self._args = (str(vault_path), repr(float(keep_days)), str(int(max_bytes)))
        self._popen: subprocess.Popen[bytes] | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._stdout: asyncio.StreamReader | None = None
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # subprocess.Popen, not the loop's subprocess_exec: Popen closes every descriptor
        # but the three pipes in the child (close_fds), whatever the loop. uvloop's spawn
        # closes only close-on-exec ones, and it holds the listening socket through a dup()
        # without that flag: the child would keep the gateway's port after the gateway.
        proc = subprocess.Popen(
            [sys.executable, "-m", "botvault.gateway.audit_writer", *self._args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            # A session of its own: Ctrl-C at the gateway's terminal goes to the foreground
            # process group, and must not kill this child (with a traceback, dropping the
            # lines still in the pipe). It ends at the end of its input, after the last line.
            start_new_session=True)
        if proc.stdin is None or proc.stdout is None:  # pragma: no cover - PIPE gives both
            raise RuntimeError("the audit writer's pipes were not made")
        loop = asyncio.get_running_loop()
        self._popen = proc
        reader = asyncio.StreamReader(limit=1 << 16)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     proc.stdout)
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, proc.stdin)
        self._stdin = transport
        self._stdout = reader
        self._reader = asyncio.ensure_future(self._read_acks())

    def _write(self, record: dict[str, Any]) -> bool:
        stdin = self._stdin
        if stdin is None or stdin.is_closing():
            return False
        stdin.write(fast_json.dumps(record) + b"\n")  # orjson: no raw newline
        return True

    def record(self, record: dict[str, Any]) -> None:
        """Hand over a record that need not be durable before anything else happens."""
        self._write(record)

    async def sent(self, record: dict[str, Any]) -> None:
        """Write a `sent` record and wait until it is durable (AuditFailed else)."""
        seq = str(record["seq"])
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting[seq] = future
        # One timer, not wait_for (a task per request before Python 3.12).
        timer = loop.call_later(_ACK_TIMEOUT, _expire, future)
        try:
            if not self._write({**record, "ack": True}):
                raise AuditFailed("the audit writer is not running")
            await future
        finally:
            timer.cancel()
            self._waiting.pop(seq, None)

    async def _read_acks(self) -> None:
        stdout = self._stdout
        while stdout is not None and (line := await stdout.readline()):
            verdict, _, rest = line.decode("ascii", "replace").strip().partition(" ")
            seq, _, why = rest.partition(" ")
            future = self._waiting.get(seq)
            if future is None or future.done():
                continue
            if verdict == "ok":
                future.set_result(None)
            else:
                future.set_exception(AuditFailed(why or "the audit line was not written"))
        for future in self._waiting.values():  # the child is gone: nothing more is written
            if not future.done():
                future.set_exception(AuditFailed("the audit writer stopped"))

    async def stop(self) -> None:
        if self._popen is None or self._stdin is None:
            return
        self._stdin.close()  # the child writes what it was given, then exits
        if self._reader is not None:
            await self._reader  # its stdout ends when it exits
        await asyncio.get_running_loop().run_in_executor(None, self._popen.wait)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(AuditFailed("the audit writer did not answer"))


def _batch(buffer: bytes) -> tuple[list[dict[str, Any]], bytes]:
    *lines, rest = buffer.split(b"\n")
    records: list[dict[str, Any]] = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            records.append(doc)
    return records, rest


def main(argv: list[str]) -> int:
    from ..audit import AuditAppender, Retention, encode_line, sync_audit

    vault, days, max_bytes = argv
    retention = Retention(float(days), int(max_bytes))
    segment = max(4096, min(8 << 20, retention.max_bytes // 16))
    log = AuditAppender(Path(vault), max_bytes=segment, retention=retention)
    failures, last_warning, buffer, dirty = 0, 0.0, b"", False
    while True:
        # Lines that asked for no acknowledgement (`done`, summaries) are written at once
        # and synced with the next line that does, or after a second of quiet.
        ready, _, _ = select.select([0], [], [], _SYNC_AFTER if dirty else None)
        if not ready:
            with contextlib.suppress(OSError):
                sync_audit(Path(vault))
            dirty = False
            continue
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        records, buffer = _batch(buffer + chunk)
        acks = [str(r.get("seq")) for r in records if r.pop("ack", None)]
        good, refused = [], set()
        for record in records:
            try:
                encode_line(record)
            except Exception:  # a record the log refuses: dropped, counted, never "ok"
                failures += 1
                refused.add(str(record.get("seq")))
                continue
            good.append(record)
        try:
            log.append(good, durable=bool(acks))
            dirty = not acks and (dirty or bool(good))  # a synced batch syncs all before it
            verdict = "ok {}\n"
        except OSError as exc:
            failures += len(good)
            why = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            verdict = f"fail {{}} {why}\n"
            if time.monotonic() - last_warning > _WARN_EVERY:  # once per interval
                last_warning = time.monotonic()
                print(f"botvault: error: audit lines not written: {exc.strerror or why}",
                      file=sys.stderr)
        out = "".join(f"fail {seq} refused\n" if seq in refused else verdict.format(seq)
                      for seq in acks)
        if out:
            os.write(1, out.encode("ascii"))
    if dirty:
        with contextlib.suppress(OSError):
            sync_audit(Path(vault))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

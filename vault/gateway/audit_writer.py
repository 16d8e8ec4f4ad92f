"""Writing the gateway's audit lines from a child process, off the gateway's interpreter.

Each line is an fsync'ed append (`botvault.audit.append_audit`). Done on a thread of the
gateway, those syscalls fight the event loop for the interpreter lock and added about half a
millisecond to every request (bench/bench_gateway.py). The gateway instead writes each
record as a JSON line to this child's stdin, which costs it one buffered pipe write, and the
child appends them in order. If the gateway dies, the child still writes what reached the
pipe, then exits at end of input.

    python -m botvault.gateway.audit_writer VAULT_PATH   # records on stdin, one per line
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from .. import fast_json

__all__ = ["AuditProcess", "main"]


class AuditProcess:
    """The gateway's end: start the child, hand it records, close and wait for it."""

    def __init__(self, vault_path: Path) -> None:
        self.vault_path = vault_path
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "botvault.gateway.audit_writer", str(self.vault_path),
            stdin=asyncio.subprocess.PIPE,
            # A session of its own: Ctrl-C at the gateway's terminal goes to the foreground
            # process group, and must not kill this child (with a traceback, dropping the
            # lines still in the pipe). It ends at the end of its input, after the last line.
            start_new_session=True)

    def record(self, record: dict[str, Any]) -> None:
        if self._proc is None or self._proc.stdin is None:
            return
        self._proc.stdin.write(fast_json.dumps(record) + b"\n")  # orjson: no raw newline

    async def stop(self) -> None:
        if self._proc is None or self._proc.stdin is None:
            return
        self._proc.stdin.close()
        await self._proc.wait()


def main(argv: list[str]) -> int:
    from ..audit import append_audit

    (vault,) = argv
    failures = 0
    for line in sys.stdin:
        try:
            append_audit(Path(vault), json.loads(line))
        except Exception as exc:  # reported and counted; the next line goes on
            failures += 1
            print(f"botvault: warning: audit line not written: {type(exc).__name__}",
                  file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

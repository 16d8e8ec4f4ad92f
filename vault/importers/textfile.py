"""Reading a key file as text, and finding the line of an offset in it."""

from __future__ import annotations

import bisect
import os
import re
import stat
from pathlib import Path

from ..errors import InvalidInputError

MAX_FILE_BYTES = 1024 * 1024


def read_text(path: Path) -> str:
    """The file as text: regular, at most 1 MiB, UTF-8 (a BOM is dropped)."""
    try:
        # O_NONBLOCK: opening a FIFO someone named by mistake must not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InvalidInputError(f"cannot read {path}: no such file") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInputError(f"cannot read {path}: not a regular file")
        data = _read_at_most(fd, MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInputError(f"{path} is larger than 1 MiB; that is not a key file",
                                hint="point the import at the .env or config file itself")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInputError(f"{path}:{line}: not valid UTF-8 text") from None
    return text.removeprefix("\ufeff")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(limit - size, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class LineIndex:
    """Line numbers (from 1) of offsets in a text; \\r\\n, \\n and \\r each end a line."""

    def __init__(self, text: str) -> None:
        self._ends = [m.end() for m in re.finditer(r"\r\n|\n|\r", text)]

    def at(self, offset: int) -> int:
        return bisect.bisect_right(self._ends, offset) + 1

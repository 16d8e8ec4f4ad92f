"""The daily notional budget: what each grant's orders were charged, per UTC day, on disk.

State beside the nonce counter (`<vault>.budget`, next to `<vault>.nonces`): a log of the
current UTC day, one JSON line per charge (`{"bot": ..., "add": "12.5"}`) after a header
line naming the day. A charge is made under an exclusive lock (`<vault>.budget.lock`,
flock) and is one append followed by a data sync, so concurrent agents or gateways on this
machine add up and a restart reads what was spent. A crash mid-append leaves at most a
last line without its newline, which is not counted (the order it was for was not signed
yet: the charge comes first) and is cut off before the next append. A new day starts a new
file, written whole (a temp file, fsync, rename, fsync of the directory) as the generation
record is. A file that is not ours, or a complete line that does not parse, is refused
(the order too): a budget that cannot be read is spent.

An order is charged when the agent signs it, before it is sent, and is not refunded when
Kraken refuses it: the agent never sees the answer, and a refund the gateway could claim
would let a compromised gateway reset the budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from . import vault_file as store
from .errors import FormatError
from .trading_policy.decimals import BadNumber, parse_amount, shown
from .trading_policy.refused import Refused

__all__ = ["DailyBudget", "budget_path", "utc_day"]

_SCHEMA = 1
_MAX_LINE = 512


def _sync(fd: int) -> None:
    """A data sync is enough for an append (it covers the size); macOS has no fdatasync
    and needs F_FULLFSYNC, which the nonce state's sync makes."""
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
        return
    from .nonces.files import default_sync

    default_sync(fd)


def budget_path(vault_path: Path) -> Path:
    return vault_path.with_name(vault_path.name + ".budget")


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")


class _Log:
    """What one process has read of the day's log: up to `offset` of file `ino`."""

    def __init__(self, ino: int, day: str | None) -> None:
        self.ino, self.day, self.offset = ino, day, 0
        self.spent: dict[str, Decimal] = {}
        self.torn = False  # the file ends in a line without its newline


class DailyBudget:
    """The spent amounts of one vault's grants for the current UTC day."""

    def __init__(self, vault_path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = budget_path(vault_path)
        self._clock = clock
        self._log: _Log | None = None

    def spent(self, bot: str) -> tuple[str, Decimal]:
        """(today's UTC date, what `bot` was charged today). No lock: a reader may miss a
        charge being appended, never count half of one."""
        day = utc_day(self._clock())
        log = self._read(fresh=True)
        return day, (log.spent.get(bot, Decimal(0)) if log and log.day == day else Decimal(0))

    def charge(self, bot: str, amount: Decimal, cap: Decimal) -> Decimal:
        """Add `amount` to today's spending of `bot`, or refuse (Refused "daily-notional")
        when that would take it above `cap`. Returns the new total."""
        day = utc_day(self._clock())
        with self._locked():
            log = self._read(fresh=False)
            if log is not None and log.day is None and log.torn:
                raise self._malformed()  # the header is written whole: never torn
            if log is None or log.day != day:
                self._start_day(day)
                log = self._read(fresh=True)
                if log is None:
                    raise FormatError(f"the budget file {self.path} disappeared",
                                      hint="another program is deleting it")
            before = log.spent.get(bot, Decimal(0))
            total = before + amount
            if total > cap:
                raise Refused("daily-notional", f"daily notional {shown(total)} above "
                              f"{shown(cap)} (spent today {shown(before)})")
            line = json.dumps({"bot": bot, "add": format(amount, "f")}, sort_keys=True)
            self._append(line + "\n", log.offset if log.torn else None)
        return total

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = store.open_private(self.path.with_name(self.path.name + ".lock"),
                                os.O_RDWR | os.O_CREAT, purpose="the budget lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self, *, fresh: bool) -> _Log | None:
        """The log as it is now (None: no file), reading only what was appended since this
        process last read it unless `fresh`."""
        try:
            fd = store.open_private(self.path, os.O_RDONLY, purpose="the budget file")
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            ino = os.fstat(f.fileno()).st_ino
            log = self._log if not fresh and self._log is not None and \
                self._log.ino == ino else _Log(ino, None)
            f.seek(log.offset)
            data = f.read()
        self._parse(log, data)
        if not fresh:
            self._log = log
        return log

    def _parse(self, log: _Log, data: bytes) -> None:
        lines = data.split(b"\n")
        log.torn = bool(lines.pop())  # after the last newline: nothing, or a torn line
        for raw in lines:
            self._take(log, raw)
            log.offset += len(raw) + 1

    def _take(self, log: _Log, raw: bytes) -> None:
        try:
            doc = json.loads(raw) if len(raw) <= _MAX_LINE else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise self._malformed()
        if log.day is None:
            if doc.get("v") != _SCHEMA or not isinstance(doc.get("day"), str):
                raise self._malformed()
            log.day = doc["day"]
            return
        bot = doc.get("bot")
        try:
            add = parse_amount(doc.get("add"), "add")
        except BadNumber:
            raise self._malformed() from None
        if not isinstance(bot, str):
            raise self._malformed()
        log.spent[bot] = log.spent.get(bot, Decimal(0)) + add

    def _malformed(self) -> FormatError:
        return FormatError(f"the budget file {self.path} is malformed",
                           hint="orders of grants with a daily budget are refused until it "
                                "is moved away (what was spent today is then lost)")

    def _start_day(self, day: str) -> None:
        """Replace the log with an empty one for `day` (whole, durable). Lock held."""
        temp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        fd = store.open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                purpose="the budget file")
        try:
            _write_all(fd, (json.dumps({"v": _SCHEMA, "day": day}) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.path)
        store.fsync_dir(self.path.parent)
        self._log = None

    def _append(self, text: str, cut: int | None) -> None:
        """Append `text`, first cutting a torn last line off at `cut`. Lock held."""
        fd = store.open_private(self.path, os.O_WRONLY | os.O_APPEND,
                                purpose="the budget file")
        try:
            if cut is not None:
                os.ftruncate(fd, cut)
            _write_all(fd, text.encode("ascii"))
            _sync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]

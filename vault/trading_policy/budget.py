"""The daily notional budget: what each grant's orders were charged, per UTC day, on disk.

State beside the nonce counter (`<vault>.budget`, next to `<vault>.nonces`), one small JSON
document for every grant of the vault, holding only the current UTC day. Every change is
made under an exclusive lock (`<vault>.budget.lock`, flock) and written whole: a temp file,
fsync, rename over, fsync of the directory, as the generation record is. So concurrent
agents or gateways on this machine add up, a restart reads what was spent, and a crash at
any point leaves either the old or the new amount, never a torn file. A file that is not
ours or is malformed is refused (the order too): a budget that cannot be read is spent.

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

from .. import store
from ..errors import FormatError
from .decimals import BadNumber, parse_amount, shown
from .refused import Refused

__all__ = ["DailyBudget", "budget_path", "utc_day"]

_SCHEMA = 1
_MAX_BYTES = 1 << 20


def budget_path(vault_path: Path) -> Path:
    return vault_path.with_name(vault_path.name + ".budget")


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")


class DailyBudget:
    """The spent amounts of one vault's grants for the current UTC day."""

    def __init__(self, vault_path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = budget_path(vault_path)
        self._clock = clock

    def spent(self, bot: str) -> tuple[str, Decimal]:
        """(today's UTC date, what `bot` was charged today)."""
        day = utc_day(self._clock())
        # No lock: every write is a whole file renamed over the old one.
        return day, _spent_of(self._read(), day, bot)

    def charge(self, bot: str, amount: Decimal, cap: Decimal) -> Decimal:
        """Add `amount` to today's spending of `bot`, or refuse (Refused "daily-notional")
        when that would take it above `cap`. Returns the new total."""
        day = utc_day(self._clock())
        with self._locked():
            doc = self._read()
            total = _spent_of(doc, day, bot) + amount
            if total > cap:
                raise Refused("daily-notional", f"daily notional {shown(total)} above "
                              f"{shown(cap)} (spent today {shown(total - amount)})")
            old = doc.get("spent")
            spent: dict[str, object] = dict(old) if doc.get("day") == day and \
                isinstance(old, dict) else {}
            spent[bot] = _plain(total)
            self._write({"v": _SCHEMA, "day": day, "spent": spent})
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

    def _read(self) -> dict[str, object]:
        try:
            fd = store.open_private(self.path, os.O_RDONLY, purpose="the budget file")
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as f:
            raw = f.read(_MAX_BYTES + 1)
        try:
            doc = json.loads(raw) if len(raw) <= _MAX_BYTES else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("v") != _SCHEMA or \
                not isinstance(doc.get("spent"), dict) or not isinstance(doc.get("day"), str):
            raise FormatError(f"the budget file {self.path} is malformed",
                              hint="orders of grants with a daily budget are refused until "
                                   "it is fixed or moved away")
        return doc

    def _write(self, doc: dict[str, object]) -> None:
        temp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        fd = store.open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                purpose="the budget file")
        try:
            data = json.dumps(doc, sort_keys=True).encode("ascii")
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.path)
        store.fsync_dir(self.path.parent)


def _spent_of(doc: dict[str, object], day: str, bot: str) -> Decimal:
    if doc.get("day") != day:
        return Decimal(0)
    spent = doc.get("spent")
    value = spent.get(bot) if isinstance(spent, dict) else None
    if value is None:
        return Decimal(0)
    try:
        return parse_amount(value, "spent")
    except BadNumber:
        raise FormatError("the budget file is malformed") from None


def _plain(value: Decimal) -> str:
    """A decimal as plain digits (never `1E+3`), exactly."""
    return format(value, "f")

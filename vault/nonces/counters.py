"""NonceStore: the counters of one state file, the hot path, and the ahead-of-clock warning.

The file side (opening, mapping, indexing, growing, locking) is vault.nonces.state_map; how
the state file is laid out, and the write protocol that keeps marks durable, is in
vault.nonces.layout; what happens after a reboot or on recover() is in vault.nonces.recovery.
"""

from __future__ import annotations

import fcntl
import os
import time
import warnings
import weakref
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..entries import NONCE_UNITS, NS_PER_UNIT, unit_ns
from ..errors import FormatError, InvalidInputError
from . import layout
from .files import default_boot_id, default_sync
from .layout import (
    COUNT_OFFS,
    EPOCH_OFF,
    MAX_DELTA,
    MAX_U64,
    RECOVER_HINT,
    entry_offset,
    pack_count,
    pack_entry,
    pack_vol,
    read_entry,
    read_vol,
    record_count,
    slot_of,
)
from .recovery import recover_file
from .state_map import MappedState

__all__ = ["AHEAD_WARNING_S", "DEFAULT_RECOVERY_MARGIN_S", "DEFAULT_RESERVE_NS", "MAX_BURST_NS",
           "MAX_COUNT", "UNITS", "UNIT_CHANGE_TOLERANCE_S", "NonceAheadWarning", "NonceStore",
           "check_count", "duration"]

# Nonce units: ms (ccxt, krakenex), us, 10ns (python-kraken-sdk). The one definition;
# entries.py takes its list from here.
UNITS = NONCE_UNITS  # the entry model's units (botvault.entries), in this order
MAX_COUNT = 1_000_000  # one call may not push a ms counter more than ~17 minutes ahead
AHEAD_WARNING_S = 10.0
UNIT_CHANGE_TOLERANCE_S = 5.0
DEFAULT_RESERVE_NS = 2_000_000_000
# The most a mark is raised beyond what is needed (see _raise_mark), in ns of clock: the most a
# counter can jump at a reboot, which resumes from the mark.
MAX_BURST_NS = 60_000_000_000
DEFAULT_RECOVERY_MARGIN_S = 3600.0
_AHEAD_NS = int(AHEAD_WARNING_S * 1e9)

# Assigned, not imported by name: CPython 3.11 compiles `name.method()` on a name bound by
# `from ... import` as an attribute load that builds a bound method on every call, which
# costs the hot path (next, allocate) about 10%.
_U64 = layout.U64
_VOL_UNPACK, _BODY_PACK, _U32_PACK = layout.VOL.unpack, layout.VOL_BODY.pack, layout.U32.pack
_crc32 = zlib.crc32
_EX, _UN = fcntl.LOCK_EX, fcntl.LOCK_UN
_flock = fcntl.flock

# (device, inode, file id, counter id) already warned about in this process.
_warned: set[tuple[int, int, bytes, str]] = set()
_live: weakref.WeakSet[NonceStore] = weakref.WeakSet()


# -- what callers pass in ----------------------------------------------------------------------

def check_count(count: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        raise InvalidInputError(f"nonce count must be an integer from 1 to {MAX_COUNT} "
                                f"(got {count!r})")


def duration(seconds: float) -> str:
    """`seconds` in words for messages: about N years, days, hours or minutes, else N.N s."""
    for size, name in ((365.25 * 86400, "years"), (86400, "days"), (3600, "hours"),
                       (60, "minutes")):
        if abs(seconds) >= 2 * size:
            return f"about {seconds / size:.0f} {name}"
    return f"{seconds:.1f} s"


class NonceAheadWarning(UserWarning):
    """A nonce was handed out more than AHEAD_WARNING_S seconds ahead of the clock."""


class NonceStore(MappedState):
    """Nonce counters in the state file at `path` (created, mode 0600, if missing).

    clock_ns: wall clock in ns (injectable for tests). boot_id: a string that changes at
    every boot. reserve: how far ahead, in nanoseconds of clock, a durable high-water mark
    is reserved at each sync (converted to each counter's unit). sync: makes what was
    written to a file descriptor durable (fsync; F_FULLFSYNC on macOS). It is called under
    the lock, so a wrapper that snapshots the file after calling it sees exactly what a
    power cut at that moment would leave at the least.
    Thread-safe; after `fork()` the child reopens the file on first use.
    """

    def __init__(self, path: Path, *, clock_ns: Callable[[], int] = time.time_ns,
                 boot_id: Callable[[], str] = default_boot_id,
                 reserve: int = DEFAULT_RESERVE_NS,
                 sync: Callable[[int], None] = default_sync) -> None:
        if not isinstance(reserve, int) or reserve < 0:
            raise InvalidInputError("reserve must be a non-negative number of nanoseconds")
        self._reserve = reserve
        super().__init__(path, clock_ns=clock_ns, boot_id=boot_id, sync=sync)
        _live.add(self)

    # -- public API ---------------------------------------------------------------------------

    def allocate(self, counter_id: str, unit: str, count: int = 1) -> range:
        """`count` consecutive nonces; the first is max(last + 1, now in `unit`)."""
        ns = NS_PER_UNIT.get(unit) if type(unit) is str else None
        if type(count) is not int or not 1 <= count <= MAX_COUNT:  # bool is no int here
            check_count(count)
        first = self._take(counter_id, ns if ns is not None else unit_ns(unit), count)
        return range(first, first + count)

    def next(self, counter_id: str, unit: str) -> int:
        """One nonce: max(last + 1, now in `unit`)."""
        ns = NS_PER_UNIT.get(unit) if isinstance(unit, str) else None
        return self._take(counter_id, ns if ns is not None else unit_ns(unit), 1)

    def peek(self, counter_id: str) -> int | None:
        """The last value handed out (after a reboot: the durable mark it resumes from)."""
        with self._locked():
            off = self._offsets.get(counter_id) or self._find(counter_id)
            return None if off is None else self._vol(off)[0]

    def durable_mark(self, counter_id: str) -> int | None:
        """The counter's confirmed high-water mark: durable, and at or above every value it
        has handed out (None for a counter the file does not hold)."""
        with self._locked():
            off = self._offsets.get(counter_id) or self._find(counter_id)
            return None if off is None else self._vol(off)[1]

    def raise_to(self, counter_id: str, unit: str, value: int) -> int:
        """Make the counter's last value at least `value` (creating the counter if needed),
        durably: the next nonce is above it. Returns the last value now."""
        ns = unit_ns(unit)
        if not isinstance(value, int) or not 0 <= value < MAX_U64:
            raise InvalidInputError("a nonce value is an integer from 0 to 2**64 - 2")
        with self._locked():
            off = self._offsets.get(counter_id) or self._find_or_create(counter_id, ns)
            last, mark = self._vol(off)
            if value > last:
                if value > mark:
                    mark = self._raise_mark(off, value, value, self._clock() // ns, ns)
                self._mm[off:off + 16] = pack_vol(self._seed, off, value, mark)
                self._sync(self._fd)  # recovery says what it did: make it true at once
                last = value
            return last

    def ahead_of_clock(self, counter_id: str, unit: str) -> float:
        """Seconds the last value stands ahead of the clock in `unit` (<= 0 when behind)."""
        ns = unit_ns(unit)
        last = self.peek(counter_id)
        return 0.0 if last is None else (last * ns - self._clock()) / 1e9

    def check_unit_change(self, counter_id: str, old: str, new: str) -> str | None:
        """Whether a counter may switch units: raises if not, returns a warning text or None.

        Refused when, counted in `new`, the last value stands more than a few seconds ahead
        of the clock: the exchange never lowers a key's nonce, so the counter would be stuck
        there. Moving to a finer unit is allowed but makes the values jump up, which locks out
        clients still making clock nonces in the coarser unit.
        """
        old_ns, new_ns = unit_ns(old), unit_ns(new)
        if old_ns == new_ns:
            return None
        last = self.peek(counter_id)
        if last is not None:
            ahead = (last * new_ns - self._clock()) / 1e9
            if ahead > UNIT_CHANGE_TOLERANCE_S:
                raise InvalidInputError(
                    f"cannot change the nonce unit from {old} to {new}: counted in {new}, "
                    f"this key's last nonce ({last}) stands {duration(ahead)} ahead of the "
                    "clock. The exchange never lowers a key's nonce, so every later nonce "
                    f"would have to stay above it, and {new} clock nonces would be rejected "
                    "all that time",
                    hint=f"keep the unit {old}, or create a new API key for the {new} client "
                         "(a new key starts with a fresh nonce)")
        if new_ns < old_ns:
            return (f"nonces for this key jump about {old_ns // new_ns}x higher, to the {new} "
                    "clock. The exchange never lowers a key's nonce: from the first "
                    f"{new} nonce on, clients that still make {old} clock nonces with this "
                    "key will be rejected (EAPI:Invalid nonce)")
        return None

    def close(self) -> None:
        with self._tlock:
            if not self._closed:
                self._closed = self._stale = True
                self._finalizer()
                _live.discard(self)

    def __enter__(self) -> NonceStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @classmethod
    def recover(cls, path: Path, *, margin_s: float = DEFAULT_RECOVERY_MARGIN_S,
                clock_ns: Callable[[], int] = time.time_ns,
                boot_id: Callable[[], str] = default_boot_id,
                sync: Callable[[int], None] = default_sync) -> list[str]:
        """Repair a state file that NonceStore refused; returns what was found and done.

        Counters whose records verify keep their place and resume from their durable mark.
        Records that do not verify are retired, and the file's floor is raised to the clock
        plus `margin_s`: a counter without a live record starts above the floor when next
        used (in whatever unit it is used), so it cannot repeat a value it handed out unless
        that value stood more than `margin_s` ahead of the clock (the ahead warning fires at
        10 s). Until the clock reaches the floor, clock-based clients on those keys are
        rejected. Pass a larger margin if the machine's clock was ever set far ahead. A file
        with nothing wrong is left untouched (an empty list is returned). Safe while other
        processes use the file: they reload when they see the file's epoch change.
        """
        return recover_file(path, margin_s=margin_s, clock_ns=clock_ns, boot_id=boot_id, sync=sync)

    # -- the hot path -------------------------------------------------------------------------

    def _take(self, counter_id: str, ns: int, count: int) -> int:
        with self._tlock:
            if self._stale:
                self._revive()
            fd = self._fd
            _flock(fd, _EX)
            try:
                mm = self._mm
                if _U64.unpack_from(mm, EPOCH_OFF)[0] != self._epoch:
                    self._load(self._boot)
                    mm = self._mm
                off = self._offsets.get(counter_id)
                if off is None:
                    off = self._find_or_create(counter_id, ns)
                    mm = self._mm
                seed = self._seed ^ off  # layout.pack_vol / read_vol, inlined
                raw = mm[off:off + 16]
                last, delta, check = _VOL_UNPACK(raw)
                if _crc32(raw[:12], seed) != check:
                    raise self._damaged(off)
                now = self._clock() // ns
                first = last + 1 if last >= now else now
                end = first + count - 1
                mark = last + delta
                if end > mark:
                    mark = self._raise_mark(off, first, end, now, ns)
                body = _BODY_PACK(end, mark - end)
                mm[off:off + 16] = body + _U32_PACK(_crc32(body, seed))  # one 16-byte copy
            finally:
                _flock(fd, _UN)
        if (end - now) * ns > _AHEAD_NS and counter_id not in self._told:
            self._warn_ahead(counter_id, (end - now) * ns / 1e9)
        return first

    def _raise_mark(self, off: int, first: int, end: int, now: int, ns: int) -> int:
        """Make a mark >= end durable, then hand out up to it; then mirror it. Returns it.

        The copy not holding the confirmed mark is written and synced first, so a torn
        write leaves the confirmed mark readable; then the other copy gets the new mark too,
        so that damage to either copy at rest never leaves only an older mark behind.

        How far beyond `end`: `reserve` of clock ahead of now, so a counter that follows the
        clock syncs every couple of seconds; and, while this process keeps raising the mark of
        a counter that stands ahead of the clock (allocations outpace it), a burst that
        doubles at each such raise up to MAX_BURST_NS. Never in proportion to how far ahead
        the counter stands:
        a reboot resumes from the mark, and a reserve that grew with the distance ahead
        doubled that distance at every reboot. A new process starts without a burst.
        """
        if end > MAX_U64:
            raise InvalidInputError("this nonce counter has reached 2**64 - 1, the largest "
                                    "nonce an exchange accepts", hint="create a new API key")
        reserve = self._reserve // ns
        previous = self._bursts.get(off)
        burst = 0
        if previous is not None and end > now:  # raised again, and ahead: outpacing the clock
            burst = min(max(reserve, 1, 2 * previous), MAX_BURST_NS // ns)
        self._bursts[off] = burst
        # first - 1 + MAX_DELTA: the volatile field holds last and mark - last (see layout).
        mark = min(MAX_U64, first - 1 + MAX_DELTA, max(end, now + reserve) + burst)
        mm, fid, fd = self._mm, self._file_id, self._fd
        slot, confirmed = slot_of(off), self._vol(off)[1]
        for keep in (0, 1):
            copy = read_entry(mm, fid, slot, keep)
            if copy is not None and copy[1] == confirmed:
                key = copy[0]
                break
        else:
            raise FormatError(f"{self._path}: nonce record {slot} lost its durable mark "
                              "while in use", hint=RECOVER_HINT)
        count, count_first, seq = record_count(self._path, mm, fid)
        self._sync(fd)  # see _create
        for step, which in enumerate((1 - keep, keep)):
            os.pwrite(fd, pack_entry(fid, slot, which, key, mark),
                      entry_offset(slot, which))
            if count <= slot:  # the count must vouch for a slot before it hands anything out
                os.pwrite(fd, pack_count(fid, count_first ^ step, self._next_slot, seq + step),
                          COUNT_OFFS[count_first ^ step])
            self._sync(fd)
            if step == 0:  # confirmed; first - 1 keeps mark - last within MAX_DELTA
                mm[off:off + 16] = pack_vol(self._seed, off, max(first - 1, self._vol(off)[0]),
                                            mark)
        return mark

    def _vol(self, off: int) -> tuple[int, int]:
        """(last, confirmed mark) of a slot, or FormatError when its check fails."""
        vol = read_vol(self._mm, self._seed, off)
        if vol is None:
            raise self._damaged(off)
        return vol

    def _open(self) -> None:
        # The counters of the file opened now that _warn_ahead has seen: the hot path asks
        # this set, so a counter that stays ahead costs no more than one that follows.
        self._told: set[str] = set()
        super()._open()

    def _warn_ahead(self, counter_id: str, ahead_s: float) -> None:
        self._told.add(counter_id)
        key = (*self._file_key, counter_id)
        if key not in _warned:
            _warned.add(key)
            warnings.warn(
                f"nonce counter {counter_id} stands {duration(ahead_s)} ahead of the clock: "
                "clients making clock-based nonces with this key will be rejected by the "
                "exchange until the clock catches up", NonceAheadWarning, stacklevel=4)

def _after_fork_in_child() -> None:
    _warned.clear()  # a new process: it warns once for itself
    for store in list(_live):
        store._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

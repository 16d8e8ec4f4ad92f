"""The nonce state file mapped into memory: opening it (and reopening after fork), reading
and indexing its records, creating a record, growing the file, and the file lock.

`MappedState` is the file side of `counters.NonceStore` (which holds the counters and the hot
path); `peek_file` reads one counter without writing. How the file is laid out is in
vault.nonces.layout; what happens after a reboot or on recover() is in vault.nonces.recovery.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import ClosedError, FormatError, InvalidInputError
from . import layout
from .files import default_boot_id, open_existing, open_or_create
from .layout import (
    BOOT_OFF,
    CHUNK_SIZE,
    EPOCH_OFF,
    RECOVER_HINT,
    TOMBSTONE,
    boot_matches,
    check_no_holes,
    check_size,
    counter_key,
    entry_offset,
    lost_records,
    pack_boot,
    pack_entry,
    pack_vol,
    parse_header,
    read_vol,
    record_count,
    resume_point,
    slot_count,
    slot_empty,
    slot_of,
    vol_offset,
    vol_seed,
)
from .recovery import read_all, settle_after_reboot, upgrade_file

__all__ = ["MappedState", "check_counter_id", "peek_file"]

_U64 = layout.U64
_EX, _UN = fcntl.LOCK_EX, fcntl.LOCK_UN


def check_counter_id(counter_id: str) -> None:
    ok = isinstance(counter_id, str) and 1 <= len(counter_id) <= 128 and all(
        "!" <= c <= "~" for c in counter_id)
    if not ok:
        raise InvalidInputError("a nonce counter id is 1 to 128 printable ASCII characters "
                                "without spaces")


class _Handle:
    """The open file and its map, closed exactly once (explicitly or when collected)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.mm: mmap.mmap | None = None

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class MappedState:
    """One state file, open and mapped, with its records indexed by counter. Thread-safe
    through `_locked`; after `fork()` the child reopens the file on first use (`_revive`)."""

    def __init__(self, path: Path, *, clock_ns: Callable[[], int],
                 boot_id: Callable[[], str], sync: Callable[[int], None]) -> None:
        self._path = Path(path)
        self._clock = clock_ns
        self._boot_id = boot_id
        self._sync = sync
        self._tlock = threading.Lock()
        self._stale = False  # closed, or inherited through fork: see _revive
        self._closed = False
        self._open()

    def _damaged(self, off: int) -> FormatError:
        return FormatError(f"{self._path}: nonce record {slot_of(off)} is damaged (its last "
                           "value fails its checksum); it is not trusted", hint=RECOVER_HINT)

    # -- opening, scanning, growing -----------------------------------------------------------

    def _open(self) -> None:
        self._boot = self._boot_id()
        fd = open_or_create(self._path, self._boot, self._clock(), self._sync)
        self._handle = _Handle(fd)
        self._finalizer = weakref.finalize(self, self._handle.close)
        self._fd = fd
        try:
            fcntl.flock(fd, _EX)
            try:
                st = os.fstat(fd)
                self._load(self._boot)
                self._file_key = (st.st_dev, st.st_ino, self._file_id)
            finally:
                fcntl.flock(fd, _UN)
        except BaseException:
            self._finalizer()
            raise

    def _load(self, boot: str) -> None:
        """(Re)read the whole file under the lock; after a reboot, resume from the marks."""
        path, fd = self._path, self._fd
        size = os.fstat(fd).st_size
        check_size(path, size)
        self._remap(size)
        if layout.HEAD.unpack_from(self._mm)[1] in layout.OLD_VERSIONS and self._mm[:8] == \
                layout.MAGIC:
            upgrade_file(path, fd, boot, self._clock(), self._sync)
            size = os.fstat(fd).st_size
            self._remap(size)
        header = parse_header(path, self._mm)
        self._file_id, self._floor_ns = header.file_id, header.floor_ns
        self._seed = vol_seed(header.file_id)
        self._bursts: dict[int, int] = {}  # offset -> the burst of this process's last raise
        same_boot = boot_matches(self._mm, self._file_id, boot)
        if not same_boot:
            settle_after_reboot(path, fd, self._mm, self._file_id, self._sync)
        self._offsets: dict[str, int] = {}
        self._by_key: dict[bytes, int] = {}
        self._next_slot = 0
        self._scan(same_boot)
        check_no_holes(path, self._mm, self._file_id, self._next_slot, slot_count(size))
        if not same_boot:
            os.pwrite(fd, pack_boot(self._file_id, boot), BOOT_OFF)
            self._sync(fd)  # the marks resumed from must be durable, not just cached
        self._epoch = _U64.unpack_from(self._mm, EPOCH_OFF)[0]

    def _scan(self, same_boot: bool) -> None:
        """Index the used slots from _next_slot on, checking each.

        Every slot below the durable record count must verify; past it, the first empty
        slot ends the table.
        """
        mm, fid, path = self._mm, self._file_id, self._path
        count = record_count(path, mm, fid)[0]
        slot, slots = self._next_slot, slot_count(self._size)
        while slot < slots and (slot < count or not slot_empty(mm, fid, slot)):
            key, mark, rebuild = resume_point(path, mm, fid, slot, same_boot)
            off = vol_offset(slot)
            if rebuild:
                mm[off:off + 16] = pack_vol(self._seed, off, mark, mark)
            if key in self._by_key:
                raise FormatError(f"{path}: two nonce records hold one counter "
                                  f"({slot_of(self._by_key[key])} and {slot})",
                                  hint=RECOVER_HINT)
            if key != TOMBSTONE:
                self._by_key[key] = off
            slot += 1
        self._next_slot = slot
        if count > slot:
            raise lost_records(path, count, slot)

    def _find(self, counter_id: str) -> int | None:
        """The record offset of a counter this process has not used yet (under the lock)."""
        check_counter_id(counter_id)
        key = counter_key(counter_id)
        off = self._by_key.get(key)
        if off is None:
            self._refresh()
            off = self._by_key.get(key)
        if off is not None:
            self._offsets[counter_id] = off
        return off

    def _find_or_create(self, counter_id: str, ns: int) -> int:
        off = self._find(counter_id)
        if off is None:
            off = self._offsets[counter_id] = self._create(counter_key(counter_id), ns)
        return off

    def _refresh(self) -> None:
        """Pick up records (and file growth) from other processes."""
        size = os.fstat(self._fd).st_size
        if size != self._size:
            check_size(self._path, size)
            if size < self._size:
                raise FormatError(f"{self._path}: nonce state file shrank while in use",
                                  hint=RECOVER_HINT)
            self._remap(size)
        self._scan(same_boot=True)

    def _create(self, key: bytes, ns: int) -> int:
        """A new record: copy A then copy B, each synced on its own (see vault.nonces.layout)."""
        slot, fd = self._next_slot, self._fd
        if slot >= slot_count(self._size):
            self._grow(self._size + CHUNK_SIZE)
        off = vol_offset(slot)
        floor = self._floor_ns // ns
        self._mm[off:off + 16] = pack_vol(self._seed, off, floor, floor)
        # A process that died between a write and its sync left that write dirty: flush it
        # on its own, or the next sync could carry both sides of some slot at once (and
        # the copy that looks confirmed might not be durable).
        self._sync(fd)
        for which in (0, 1):
            os.pwrite(fd, pack_entry(self._file_id, slot, which, key, floor),
                      entry_offset(slot, which))
            self._sync(fd)
        self._by_key[key] = off
        self._next_slot = slot + 1  # the count covers it at its first mark (_raise_mark)
        return off

    def _grow(self, size: int) -> None:
        """Extend the file to `size` with real blocks, then map it.

        Never a sparse ftruncate: on a full disk a store through the map into a hole is
        SIGBUS, which kills the process (the agent with it). posix_fallocate reserves the
        blocks or fails with ENOSPC here, as a clean error; where it is missing, zeros are
        written. A failure puts the size back, so the file stays whole chunks.
        """
        fd, old = self._fd, self._size
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, old, size - old)
            else:  # macOS: written zeros are allocated blocks
                zeros = bytes(size - old)
                done = 0
                while done < len(zeros):
                    done += os.pwrite(fd, zeros[done:], old + done)
            self._sync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_size != old:
                    os.ftruncate(fd, old)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(exc.errno, "no space left to grow the nonce state file for a "
                              "new counter (the counters it holds keep working)",
                              str(self._path)) from None
            raise
        self._remap(size)

    def _remap(self, size: int) -> None:
        old = self._handle.mm
        self._handle.mm = self._mm = mmap.mmap(self._fd, size)
        self._size = size
        if old is not None:
            old.close()

    # -- locking, fork, close -----------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._tlock:
            if self._stale:
                self._revive()
            fd = self._fd
            fcntl.flock(fd, _EX)
            try:
                if _U64.unpack_from(self._mm, EPOCH_OFF)[0] != self._epoch:
                    self._load(self._boot)
                yield
            finally:
                fcntl.flock(fd, _UN)

    def _revive(self) -> None:
        """After fork the child shares the parent's open file, and so its flock: reopen."""
        if self._closed:
            raise ClosedError("this NonceStore is closed")
        self._finalizer()
        self._open()
        self._stale = False

    def _forked(self) -> None:
        self._tlock = threading.Lock()  # the parent's may have been held at fork time
        self._stale = True



def peek_file(path: Path, counter_id: str, *,
              boot_id: Callable[[], str] = default_boot_id) -> tuple[int, int] | None:
    """(last value handed out, durable mark) of `counter_id` (after a reboot the last value
    is the mark it resumes from), or None when the file does not hold it; read without
    writing anything, so that it works on a read-only file system. Checked as NonceStore
    checks the file at open."""
    check_counter_id(counter_id)
    try:
        fd = open_existing(path, writable=False)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # no writer between our reads
        data = read_all(fd)
    finally:
        os.close(fd)
    check_size(path, len(data))
    fid = parse_header(path, data).file_id
    same_boot = boot_matches(data, fid, boot_id())
    count, key = record_count(path, data, fid)[0], counter_key(counter_id)
    slot, slots = 0, slot_count(len(data))
    while slot < slots and (slot < count or not slot_empty(data, fid, slot)):
        found, mark, rebuild = resume_point(path, data, fid, slot, same_boot)
        if found == key:
            vol = None if rebuild else read_vol(data, vol_seed(fid), vol_offset(slot))
            return (mark, mark) if vol is None else vol
        slot += 1
    if count > slot:
        raise lost_records(path, count, slot)
    return None

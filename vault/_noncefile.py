"""The nonce state file: layout, checksums, validation, safe opening, repair.

Internal to vault.nonces. Little-endian; pages of 4096 bytes.

    page 0   header, written only at creation and by recover()
               0 magic "BVNONCE\\0"   8 version u16 = 1   10 slots per chunk u16 = 256
              12 page size u16       14 flags u16 = 0    16 file id (16 random bytes)
              32 recovery floor, ns  40 created at, ns   48 checksum of bytes 0-47
              56 epoch u64 (volatile: bumped by recover() to make open stores reload)
    page 1   0 boot digest (16) + checksum (8);  512 record count, copy A (u64 + check 8)
    page 2   0 record count, copy B
    chunks   from offset 12288, 5 pages each, 256 slots each; slot j of a chunk has
               page 0     at 16*j: last value handed out, confirmed mark (u64 each; volatile)
               pages 1-2  at 32*j: copy A of the high-water mark: key (16), value u64, check 8
               pages 3-4  at 32*j: copy B, same shape

"Volatile" fields are written only through the shared memory map: they survive SIGKILL (the
kernel keeps the page) but not power loss, carry no checksum, and are rebuilt from the
copies after a reboot. Everything else is written with pwrite, under the lock, by a
protocol that assumes the worst of a power cut: every page written since the last sync may
be in flight, and each of its sectors may come back old, new or garbage.

- A sync never carries both copies of anything: high-water copies A and B live in different
  pages and are written in separate syncs, as are the two record count copies; the volatile
  page is apart from both; the header page is only written at creation and by recover().
- Every durable operation starts with a sync, so whatever a process that died between a
  write and its sync left dirty is flushed on its own first.
- A mark is raised by writing the copy not holding the confirmed mark, syncing, confirming
  (only then may values up to it be handed out), then mirroring it into the other copy, so
  damage to either copy at rest never leaves only an older mark.
- Creation writes A, syncs, writes B, syncs; the record count (two copies with a write
  sequence) is raised to cover a slot in the same syncs as its first mark, before it hands
  anything out. So nothing past the durable count has handed out a value.
- At the first open after a reboot (the boot block differs), settle_after_reboot() rewrites
  both copies of every counted slot from the larger valid one, side A then side B, and wipes
  every slot past the count (perhaps garbage from the cut).

The key is a blake2b digest of the counter id; checksums are blake2b keyed by the file id
and bound to the slot, so a copy moved to another slot or file does not verify. Used slots
form a prefix; past the record count, a slot whose copy B does not verify is empty.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import secrets
import stat
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from .errors import FormatError, InsecurePermissionsError

MAGIC = b"BVNONCE\x00"
VERSION = 1
PAGE = 4096
SLOTS_PER_CHUNK = 256
HEADER_REGION = 3 * PAGE
CHUNK_SIZE = 5 * PAGE
INITIAL_SIZE = HEADER_REGION + CHUNK_SIZE
MAX_U64 = 2**64 - 1
TOMBSTONE = b"\xff" * 16

EPOCH_OFF = 56
BOOT_OFF = PAGE
COUNT_OFFS = (PAGE + 512, 2 * PAGE)

HEAD = struct.Struct("<8sHHHH16sQQ")  # magic .. created_ns: the checksummed 48 bytes
U64 = struct.Struct("<Q")
PAIR = struct.Struct("<QQ")  # volatile (last, confirmed mark) of a slot
ENTRY = struct.Struct("<16sQ8s")  # a high-water copy: key, value, check
COUNT = struct.Struct("<QQ8s")  # a record count copy: value, write sequence, check
BOOT = struct.Struct("<16s8s")
_ZERO_ENTRY = bytes(ENTRY.size)

Buf = bytes | mmap.mmap

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

RECOVER_HINT = (
    "nothing in the file proves which nonces were handed out, so none will be guessed. "
    "NonceStore.recover(path) keeps every counter that still verifies and restarts the "
    "others above the clock plus a margin (1 hour by default), above anything they can "
    "have handed out; clock-based clients on those keys are rejected until the clock "
    "catches up"
)


# -- where things are --------------------------------------------------------------------------

def vol_offset(slot: int) -> int:
    chunk, j = divmod(slot, SLOTS_PER_CHUNK)
    return HEADER_REGION + chunk * CHUNK_SIZE + 16 * j


def entry_offset(slot: int, which: int) -> int:
    chunk, j = divmod(slot, SLOTS_PER_CHUNK)
    return HEADER_REGION + chunk * CHUNK_SIZE + PAGE + 2 * PAGE * which + ENTRY.size * j


def slot_of(vol_off: int) -> int:
    chunk, rest = divmod(vol_off - HEADER_REGION, CHUNK_SIZE)
    return chunk * SLOTS_PER_CHUNK + rest // 16


def slot_count(size: int) -> int:
    return (size - HEADER_REGION) // CHUNK_SIZE * SLOTS_PER_CHUNK


def aligned_size(size: int) -> int:
    """The smallest valid file size that holds `size` bytes."""
    chunks = max(1, -(-(size - HEADER_REGION) // CHUNK_SIZE))
    return HEADER_REGION + chunks * CHUNK_SIZE


def check_size(path: Path, size: int) -> None:
    if size != aligned_size(size) or size < INITIAL_SIZE:
        raise FormatError(f"{path}: nonce state file is truncated or padded ({size} bytes is "
                          f"not a header plus whole {CHUNK_SIZE}-byte chunks)",
                          hint=RECOVER_HINT)


# -- checksums ---------------------------------------------------------------------------------

def _mac(person: bytes, key: bytes, *parts: bytes) -> bytes:
    return hashlib.blake2b(b"".join(parts), digest_size=8, key=key, person=person).digest()


def counter_key(counter_id: str) -> bytes:
    return hashlib.blake2b(counter_id.encode("ascii"), digest_size=16,
                           person=b"bv-nonce-id").digest()


def pack_entry(file_id: bytes, slot: int, which: int, key: bytes, value: int) -> bytes:
    check = _mac(b"bv-nonce-hwm", file_id, U64.pack(slot), bytes((which,)), key,
                 U64.pack(value))
    return ENTRY.pack(key, value, check)


def read_entry(buf: Buf, file_id: bytes, slot: int, which: int) -> tuple[bytes, int] | None:
    """(key, value) of a copy whose checksum verifies, else None."""
    off = entry_offset(slot, which)
    key, value, _ = ENTRY.unpack_from(buf, off)
    return (key, value) if buf[off:off + ENTRY.size] == pack_entry(file_id, slot, which, key,
                                                                   value) else None


def pack_count(file_id: bytes, which: int, value: int, seq: int) -> bytes:
    check = _mac(b"bv-nonce-count", file_id, bytes((which,)), U64.pack(value), U64.pack(seq))
    return COUNT.pack(value, seq, check)


def record_count(path: Path, buf: Buf, file_id: bytes) -> tuple[int, int, int]:
    """(durable record count, the copy to write first, the next write sequence).

    The count is raised before a new slot hands anything out, so a file with fewer used
    slots than it counts has lost records. Writes go to the most recently written copy first,
    then to the other, so the older one is always a complete, synced write.
    """
    copies: list[tuple[int, int] | None] = []
    for which, off in enumerate(COUNT_OFFS):
        value, seq, _ = COUNT.unpack_from(buf, off)
        ok = buf[off:off + COUNT.size] == pack_count(file_id, which, value, seq)
        copies.append((value, seq) if ok else None)
    valid = [c for c in copies if c is not None]
    if not valid:
        raise FormatError(f"{path}: nonce state file is corrupt (both record count copies "
                          "fail their checksum)", hint=RECOVER_HINT)
    a, b = copies
    first = 0 if a is None or (b is not None and a[1] >= b[1]) else 1
    return max(v for v, _ in valid), first, max(s for _, s in valid) + 1


def pack_boot(file_id: bytes, boot: str) -> bytes:
    digest = hashlib.blake2b(boot.encode(), digest_size=16, person=b"bv-nonce-boot").digest()
    return BOOT.pack(digest, _mac(b"bv-nonce-bootid", file_id, digest))


def boot_matches(buf: Buf, file_id: bytes, boot: str) -> bool:
    """False for another boot and for a damaged boot block: both mean "assume a reboot"."""
    return buf[BOOT_OFF:BOOT_OFF + BOOT.size] == pack_boot(file_id, boot)


# -- header ------------------------------------------------------------------------------------

class Header(NamedTuple):
    file_id: bytes
    floor_ns: int
    created_ns: int

    def pack(self) -> bytes:
        head = HEAD.pack(MAGIC, VERSION, SLOTS_PER_CHUNK, PAGE, 0, self.file_id,
                         self.floor_ns, self.created_ns)
        return head + _mac(b"bv-nonce-head", b"", head)


def parse_header(path: Path, buf: Buf) -> Header:
    """The header, or FormatError saying what is wrong with it."""
    magic, version, slots, page, _, file_id, floor_ns, created = HEAD.unpack_from(buf)
    if magic != MAGIC:
        raise FormatError(f"{path} is not a botvault nonce state file (bad magic)",
                          hint=RECOVER_HINT)
    if version != VERSION:
        raise FormatError(f"{path}: unsupported nonce state version {version}",
                          hint="use the botvault version that wrote it")
    if (slots, page) != (SLOTS_PER_CHUNK, PAGE):
        raise FormatError(f"{path}: nonce state header has impossible sizes", hint=RECOVER_HINT)
    header = Header(file_id, floor_ns, created)
    if buf[:HEAD.size + 8] != header.pack():
        raise FormatError(f"{path}: nonce state header is corrupt (checksum mismatch)",
                          hint=RECOVER_HINT)
    return header


def header_region(header: Header, epoch: int, boot: str, count: int) -> bytes:
    fid = header.file_id
    page0 = (header.pack() + U64.pack(epoch % 2**64)).ljust(PAGE, b"\0")
    page1 = (pack_boot(fid, boot).ljust(512, b"\0") + pack_count(fid, 0, count, 1))
    return page0 + page1.ljust(PAGE, b"\0") + pack_count(fid, 1, count, 2).ljust(PAGE, b"\0")


def initial_bytes(boot: str, now_ns: int, floor_ns: int = 0) -> bytes:
    header = Header(secrets.token_bytes(16), floor_ns, now_ns)
    return header_region(header, 0, boot, 0).ljust(INITIAL_SIZE, b"\0")


# -- slots -------------------------------------------------------------------------------------

def slot_empty(buf: Buf, file_id: bytes, slot: int) -> bool:
    """Copy B does not verify: never used, or a creation that did not finish (creation
    writes A, then B), or garbage from a power cut. Slots below the record count are checked
    with resume_point instead, which accepts either copy."""
    return read_entry(buf, file_id, slot, 1) is None


def resume_point(path: Path, buf: Buf, file_id: bytes, slot: int,
                 same_boot: bool) -> tuple[bytes, int, bool]:
    """(key, mark, rebuild volatile) of a used slot, checked; FormatError if untrustworthy.

    Within one boot consistent volatile fields are trusted (SIGKILL cannot tear them);
    after a reboot only the copies count and the slot resumes from the larger valid one.
    """
    good = [e for e in (read_entry(buf, file_id, slot, w) for w in (0, 1)) if e is not None]
    if not good:
        raise FormatError(f"{path}: nonce record {slot} is corrupt (both high-water copies "
                          "fail their checksum)", hint=RECOVER_HINT)
    if len(good) == 2 and good[0][0] != good[1][0]:
        raise FormatError(f"{path}: nonce record {slot} is corrupt (its copies name "
                          "different counters)", hint=RECOVER_HINT)
    key, mark = good[0][0], max(value for _, value in good)
    last, confirmed = PAIR.unpack_from(buf, vol_offset(slot))
    if not same_boot or last == confirmed == 0:  # rebooted, or creation died before use
        return key, mark, True
    if confirmed not in [value for _, value in good] or last > confirmed:
        raise FormatError(f"{path}: nonce record {slot} is inconsistent (its last value or "
                          "mark disagrees with its checksummed copies)", hint=RECOVER_HINT)
    return key, confirmed, False


def lost_records(path: Path, count: int, holds: int) -> FormatError:
    return FormatError(f"{path}: nonce state file lost records (it counts {count}, holds "
                       f"{holds}): truncated or damaged", hint=RECOVER_HINT)


def check_no_holes(path: Path, buf: Buf, file_id: bytes, end: int, slots: int) -> None:
    """Used slots form a prefix: a record after an empty slot means damage."""
    for slot in range(end + 1, slots):
        if not slot_empty(buf, file_id, slot):
            raise FormatError(f"{path}: nonce record table has a hole at record {end}",
                              hint=RECOVER_HINT)


def settle_after_reboot(path: Path, fd: int, buf: Buf, file_id: bytes,
                        sync: Callable[[int], None]) -> None:
    """Before anything else in a new boot: make both copies of every counted slot hold its
    mark again (a power cut may have garbled one side), and clear every slot past the count.

    No nonce was handed out from a slot past the durable count (the count covering a slot is
    durable before any is), so whatever such a slot holds, maybe garbage, is dropped. Side A
    is written and synced before side B, so the side not being written stays intact.
    """
    count, _, seq = record_count(path, buf, file_id)
    if count > slot_count(len(buf)):
        raise lost_records(path, count, slot_count(len(buf)))
    marks = [resume_point(path, buf, file_id, slot, False)[:2] for slot in range(count)]
    sync(fd)  # flush what a process that died mid-settle left dirty, on its own
    for which in (0, 1):
        writes = [(COUNT_OFFS[which], pack_count(file_id, which, count, seq + which))]
        for slot in range(slot_count(len(buf))):
            wanted = pack_entry(file_id, slot, which, *marks[slot]) if slot < count \
                else _ZERO_ENTRY
            writes.append((entry_offset(slot, which), wanted))
        writes = [(off, data) for off, data in writes if buf[off:off + len(data)] != data]
        for off, data in writes:
            os.pwrite(fd, data, off)
        if writes:
            sync(fd)


# -- opening and creating ----------------------------------------------------------------------

def default_sync(fd: int) -> None:
    """Make everything written to `fd` durable (F_FULLFSYNC on macOS: fsync alone is not)."""
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is not None:
        try:
            fcntl.fcntl(fd, full)
        except OSError:
            pass  # not every file system has it; plain fsync below is the best left
        else:
            return
    os.fsync(fd)


def default_boot_id() -> str:
    """A string that changes at every boot: Linux's boot_id, macOS's boot session."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        if sys.platform != "darwin":
            raise
    return _darwin_boot_session()


def _darwin_boot_session() -> str:
    # Imported here: macOS only, and ctypes would add to every start-up on Linux.
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    for name in (b"kern.bootsessionuuid", b"kern.boottime"):
        buf = ctypes.create_string_buffer(64)
        size = ctypes.c_size_t(len(buf))
        if libc.sysctlbyname(name, buf, ctypes.byref(size), None, ctypes.c_size_t(0)) == 0:
            return name.decode() + ":" + buf.raw[:size.value].hex()
    raise OSError(ctypes.get_errno(), "cannot read the boot session from sysctl")


def check_file(path: Path, fd: int) -> None:
    """Refuse anything but a regular file of ours that no one else can write to."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise InsecurePermissionsError(f"{path} is not a regular file",
                                       hint="move it away; botvault recreates the state file")
    if st.st_uid != os.geteuid():
        raise InsecurePermissionsError(f"{path} is owned by uid {st.st_uid}, not by you",
                                       hint=f"run: chown {os.geteuid()} {path}")
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise InsecurePermissionsError(
            f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); they "
            "could make nonces repeat", hint=f"run: chmod 600 {path}")


def open_existing(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise InsecurePermissionsError(
                f"{path} is a symlink; botvault does not follow symlinks",
                hint="replace it with the real file") from None
        raise
    try:
        check_file(path, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create(path: Path, content: bytes, sync: Callable[[int], None]) -> None:
    """Publish a fully written, synced file at `path` unless one exists already.

    link() rather than rename(): a rename would replace a file that another process created
    meanwhile and may already be handing out nonces from.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only clear bits; this also undoes an odd one
        os.pwrite(fd, content, 0)
        sync(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
    finally:
        os.close(fd)
        os.unlink(tmp)
    dfd = os.open(path.parent, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def open_or_create(path: Path, boot: str, now_ns: int, sync: Callable[[int], None]) -> int:
    for _ in range(8):
        try:
            return open_existing(path)
        except FileNotFoundError:
            create(path, initial_bytes(boot, now_ns), sync)
    raise FormatError(f"{path}: the nonce state file keeps disappearing",
                      hint="another program is deleting it")


# -- repair ------------------------------------------------------------------------------------

Kept = tuple[bytes, int, int]  # key, last, mark


def rebuild(path: Path, data: bytes, boot: str, now_ns: int,
            margin_ns: int) -> tuple[bytes, list[str]]:
    """A repaired image of `data` and what was wrong; (data, []) when nothing was.

    Records that verify keep their slot and position. Every other used or missing slot is
    retired (tombstoned, never reused), and the recovery floor rises to now + margin: a
    counter without a live record starts above the floor when next used.
    """
    if data[:8] == MAGIC and len(data) >= HEAD.size and HEAD.unpack_from(data)[1] != VERSION:
        raise FormatError(f"{path}: nonce state version {HEAD.unpack_from(data)[1]} is not "
                          "this botvault's; recovery will not rewrite it",
                          hint="use the botvault version that wrote it")
    findings: list[str] = []
    size = aligned_size(max(len(data), INITIAL_SIZE))
    if len(data) != size:
        findings.append(f"the file is {len(data)} bytes, not a header plus whole chunks: the "
                        "missing bytes are read as zeros")
    buf = data.ljust(size, b"\0")
    header: Header | None = None
    try:
        header = parse_header(path, buf)
    except FormatError as exc:
        findings.append(f"{exc.message}: no record can be verified, all are dropped")
    records: list[Kept | None] = []
    if header is not None:
        records = _sort_records(path, buf, header, boot, findings)
    if not findings:
        return data, []
    file_id = header.file_id if header else secrets.token_bytes(16)
    floor = max(header.floor_ns if header else 0, now_ns + margin_ns)
    new_header = Header(file_id, floor, header.created_ns if header else now_ns)
    out = bytearray(max(size, aligned_size(vol_offset(len(records)))))
    out[:HEADER_REGION] = header_region(new_header, U64.unpack_from(buf, EPOCH_OFF)[0] + 1,
                                        boot, len(records))
    for slot, rec in enumerate(records):
        key, last, mark = rec or (TOMBSTONE, 0, 0)
        PAIR.pack_into(out, vol_offset(slot), last, mark)
        for which in (0, 1):
            off = entry_offset(slot, which)
            out[off:off + ENTRY.size] = pack_entry(file_id, slot, which, key, mark)
    return bytes(out), findings


def _sort_records(path: Path, buf: bytes, header: Header, boot: str,
                  findings: list[str]) -> list[Kept | None]:
    """Per slot up to the last used or counted one: what to keep, or None to retire."""
    fid = header.file_id
    same_boot = boot_matches(buf, fid, boot)
    try:
        count = record_count(path, buf, fid)[0]
    except FormatError as exc:
        findings.append(f"{exc.message}: records lost at the end cannot be told")
        count = 0
    used = [s for s in range(slot_count(len(buf)))
            if (read_entry(buf, fid, s, 0) is not None and s < count)
            or not slot_empty(buf, fid, s)]
    records: list[Kept | None] = [None] * max(count, used[-1] + 1 if used else 0)
    lost = sorted(set(range(count)) - set(used))
    if lost:
        findings.append(f"records {lost[:8]} fail their checksums or are missing (the file "
                        f"counts {count}): retired")
    owners: dict[bytes, int] = {}
    for slot in used:
        try:
            key, mark, rebuilt = resume_point(path, buf, fid, slot, same_boot)
        except FormatError as exc:
            findings.append(f"{exc.message}: retired")
            continue
        if key in owners:
            findings.append(f"records {owners[key]} and {slot} hold one counter: both retired")
            records[owners[key]] = None
        elif key != TOMBSTONE:
            owners[key] = slot
            records[slot] = (key, mark if rebuilt else PAIR.unpack_from(buf, vol_offset(slot))[0],
                             mark)
    return records


def write_image(fd: int, image: bytes, sync: Callable[[int], None]) -> None:
    """Write a rebuilt file in three synced passes: the header (the floor must be durable
    before any record is retired), then the A side, then the B side, so that no sync has
    both copies of a record in flight."""
    sync(fd)  # flush what a process that died mid-write left dirty, on its own
    chunks = range(HEADER_REGION, len(image), CHUNK_SIZE)
    passes = [[(0, PAGE)],
              [(PAGE, PAGE), *((c, 3 * PAGE) for c in chunks)],
              [(2 * PAGE, PAGE), *((c + 3 * PAGE, 2 * PAGE) for c in chunks)]]
    for ranges in passes:
        for off, length in ranges:
            os.pwrite(fd, image[off:off + length], off)
        sync(fd)

"""The nonce state file: layout, checksums, header, slot validation.

Internal to vault.nonces. Little-endian; pages of 4096 bytes.

    page 0   header, written only at creation and by recover()
               0 magic "BVNONCE\\0"   8 version u16 = 2   10 slots per chunk u16 = 256
              12 page size u16       14 flags u16 = 0    16 file id (16 random bytes)
              32 recovery floor, ns  40 created at, ns   48 checksum of bytes 0-47
              56 epoch u64 (volatile: bumped by recover() to make open stores reload)
    page 1   0 boot digest (16) + checksum (8);  512 record count, copy A (u64 + check 8)
    page 2   0 record count, copy B
    chunks   from offset 12288, 5 pages each, 256 slots each; slot j of a chunk has
               page 0     at 16*j: last value handed out u64, confirmed mark minus last u32,
                          check u32 (volatile; the check is a CRC-32 bound to file and slot)
               pages 1-2  at 32*j: copy A of the high-water mark: key (16), value u64, check 8
               pages 3-4  at 32*j: copy B, same shape

"Volatile" fields are written only through the shared memory map, 16 bytes in one copy:
they survive SIGKILL (the kernel keeps the page) but not power loss, and are rebuilt from
the copies after a reboot. Their check catches a bit flip or a lowered value within a boot
(format 1 had none, so a lowered `last` repeated nonces); it is a CRC, not a MAC, because
the hot path computes it at every nonce and anyone able to write the file can recompute
any checksum in it anyway (the file id is in the file).

The file is grown only with real blocks (posix_fallocate, else written zeros), never by a
sparse ftruncate: a store through the map into a hole the full disk cannot fill is SIGBUS.

Everything else is written with pwrite, under the lock, by a protocol that assumes the
worst of a power cut: every page written since the last sync may be in flight, and each of
its sectors may come back old, new or garbage.

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
- At the first open after a reboot (the boot block differs), settle_after_reboot() (in
  vault.nonces.recovery) rewrites both copies of every counted slot from the larger valid
  one, side A then side B, and wipes every slot past the count (perhaps garbage from the cut).

The key is a blake2b digest of the counter id; checksums are blake2b keyed by the file id
and bound to the slot, so a copy moved to another slot or file does not verify. Used slots
form a prefix; past the record count, a slot whose copy B does not verify is empty.
"""

from __future__ import annotations

import hashlib
import mmap
import secrets
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

from ..errors import FormatError

MAGIC = b"BVNONCE\x00"
VERSION = 2
OLD_VERSIONS = (1,)  # read by recovery only: same copies, volatile fields without a check
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
VOL = struct.Struct("<QII")  # volatile: last, confirmed mark - last, check
VOL_BODY = struct.Struct("<QI")  # the checked part of VOL
U32 = struct.Struct("<I")
MAX_DELTA = 2**32 - 1  # the largest confirmed mark - last a volatile field holds
ENTRY = struct.Struct("<16sQ8s")  # a high-water copy: key, value, check
COUNT = struct.Struct("<QQ8s")  # a record count copy: value, write sequence, check
BOOT = struct.Struct("<16s8s")

Buf = bytes | mmap.mmap

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


# -- volatile fields -------------------------------------------------------------------------

def vol_seed(file_id: bytes) -> int:
    """The CRC seed of a file's volatile fields; a slot's check starts at seed ^ offset, so a
    field copied to another slot or file does not verify. NonceStore._take inlines this."""
    return zlib.crc32(file_id, 0x62766E63)


def pack_vol(seed: int, off: int, last: int, mark: int) -> bytes:
    """The 16 bytes of a slot's volatile field: `mark` may exceed `last` by MAX_DELTA."""
    body = VOL_BODY.pack(last, mark - last)
    return body + U32.pack(zlib.crc32(body, seed ^ off))


def read_vol(buf: Buf, seed: int, off: int) -> tuple[int, int] | None:
    """(last, confirmed mark) of a volatile field whose check verifies, else None."""
    raw = bytes(buf[off:off + VOL.size])
    last, delta, check = VOL.unpack(raw)
    return (last, last + delta) if zlib.crc32(raw[:VOL_BODY.size], seed ^ off) == check \
        else None


# -- header ------------------------------------------------------------------------------------

class Header(NamedTuple):
    file_id: bytes
    floor_ns: int
    created_ns: int
    version: int = VERSION

    def pack(self) -> bytes:
        head = HEAD.pack(MAGIC, self.version, SLOTS_PER_CHUNK, PAGE, 0, self.file_id,
                         self.floor_ns, self.created_ns)
        return head + _mac(b"bv-nonce-head", b"", head)


def parse_header(path: Path, buf: Buf, *, old_ok: bool = False) -> Header:
    """The header, or FormatError saying what is wrong with it. `old_ok`: also a header of
    an earlier format (OLD_VERSIONS), for recovery, which rebuilds it in this one."""
    magic, version, slots, page, _, file_id, floor_ns, created = HEAD.unpack_from(buf)
    if magic != MAGIC:
        raise FormatError(f"{path} is not a botvault nonce state file (bad magic)",
                          hint=RECOVER_HINT)
    if version in OLD_VERSIONS and not old_ok:
        raise FormatError(f"{path}: nonce state format {version} is from an earlier botvault "
                          f"(this one writes format {VERSION})",
                          hint="recovery rewrites it in this format, every counter resuming "
                               "from its durable mark: " + RECOVER_HINT)
    if version != VERSION and version not in OLD_VERSIONS:
        raise FormatError(f"{path}: unsupported nonce state version {version}",
                          hint="use the botvault version that wrote it")
    if (slots, page) != (SLOTS_PER_CHUNK, PAGE):
        raise FormatError(f"{path}: nonce state header has impossible sizes", hint=RECOVER_HINT)
    header = Header(file_id, floor_ns, created, version)
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


def durable_point(path: Path, buf: Buf, file_id: bytes, slot: int) -> tuple[bytes, int]:
    """(key, mark) of a used slot from its checksummed copies alone; FormatError if neither
    verifies or they disagree. Nothing up to the confirmed mark (and so nothing handed out)
    is above it: a mark is confirmed only once a copy holding it is durable."""
    key, values = _checked_copies(path, buf, file_id, slot)
    return key, max(values)


def _checked_copies(path: Path, buf: Buf, file_id: bytes, slot: int) -> tuple[bytes, list[int]]:
    """(key, the values of the copies that verify); FormatError as durable_point says."""
    good = [e for e in (read_entry(buf, file_id, slot, w) for w in (0, 1)) if e is not None]
    if not good:
        raise FormatError(f"{path}: nonce record {slot} is corrupt (both high-water copies "
                          "fail their checksum)", hint=RECOVER_HINT)
    if len(good) == 2 and good[0][0] != good[1][0]:
        raise FormatError(f"{path}: nonce record {slot} is corrupt (its copies name "
                          "different counters)", hint=RECOVER_HINT)
    return good[0][0], [value for _, value in good]


def resume_point(path: Path, buf: Buf, file_id: bytes, slot: int,
                 same_boot: bool) -> tuple[bytes, int, bool]:
    """(key, mark, rebuild volatile) of a used slot, checked; FormatError if untrustworthy.

    Within one boot the volatile field must verify and agree with a copy; after a reboot
    only the copies count and the slot resumes from the larger valid one.
    """
    key, copies = _checked_copies(path, buf, file_id, slot)
    off = vol_offset(slot)
    if not same_boot or buf[off:off + VOL.size] == bytes(VOL.size):
        return key, max(copies), True  # rebooted, or never written (recover() writes all)
    vol = read_vol(buf, vol_seed(file_id), off)
    if vol is None:
        raise FormatError(f"{path}: nonce record {slot} is damaged (its last value fails its "
                          "checksum)", hint=RECOVER_HINT)
    if vol[1] not in copies:
        raise FormatError(f"{path}: nonce record {slot} is inconsistent (its mark disagrees "
                          "with its checksummed copies)", hint=RECOVER_HINT)
    return key, vol[1], False


def lost_records(path: Path, count: int, holds: int) -> FormatError:
    return FormatError(f"{path}: nonce state file lost records (it counts {count}, holds "
                       f"{holds}): truncated or damaged", hint=RECOVER_HINT)


def check_no_holes(path: Path, buf: Buf, file_id: bytes, end: int, slots: int) -> None:
    """Used slots form a prefix: a record after an empty slot means damage."""
    for slot in range(end + 1, slots):
        if not slot_empty(buf, file_id, slot):
            raise FormatError(f"{path}: nonce record table has a hole at record {end}",
                              hint=RECOVER_HINT)

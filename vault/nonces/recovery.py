"""Repairing the nonce state file: settling it after a reboot, and NonceStore.recover's
rebuild of a file that NonceStore refused. The layout and its invariants are described in
vault.nonces.layout."""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from ..errors import FormatError, InvalidInputError
from .files import create, open_existing
from .layout import (
    CHUNK_SIZE,
    COUNT_OFFS,
    ENTRY,
    EPOCH_OFF,
    HEAD,
    HEADER_REGION,
    INITIAL_SIZE,
    MAGIC,
    MAX_DELTA,
    OLD_VERSIONS,
    PAGE,
    RECOVER_HINT,
    TOMBSTONE,
    U64,
    VERSION,
    Buf,
    Header,
    aligned_size,
    boot_matches,
    durable_point,
    entry_offset,
    header_region,
    initial_bytes,
    lost_records,
    pack_count,
    pack_entry,
    pack_vol,
    parse_header,
    read_entry,
    read_vol,
    record_count,
    resume_point,
    slot_count,
    slot_empty,
    vol_offset,
    vol_seed,
)

_ZERO_ENTRY = bytes(ENTRY.size)


# -- after a reboot ----------------------------------------------------------------------------

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


# -- repair ------------------------------------------------------------------------------------

def recover_file(path: Path, *, margin_s: float, clock_ns: Callable[[], int],
                 boot_id: Callable[[], str], sync: Callable[[int], None]) -> list[str]:
    """What NonceStore.recover does (see there): returns what was found and done."""
    if not margin_s >= 0:
        raise InvalidInputError("the recovery margin must be a non-negative number of "
                                "seconds")
    path = Path(path)
    boot, now = boot_id(), clock_ns()
    margin = int(margin_s * 1e9)
    try:
        fd = open_existing(path)
    except FileNotFoundError:
        create(path, initial_bytes(boot, now, now + margin), sync)
        return [f"{path} did not exist: created it with every counter starting at least "
                f"{margin_s:g} s ahead of the clock"]
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        image, findings = rebuild(path, read_all(fd), boot, now, margin)
        if findings:
            write_image(fd, image, sync)
    finally:
        os.close(fd)
    return findings


def upgrade_file(path: Path, fd: int, boot: str, now_ns: int,
                 sync: Callable[[int], None]) -> None:
    """Rewrite a file of an earlier format (OLD_VERSIONS) in this one, under the caller's
    lock, when nothing else is wrong with it: every counter resumes from its durable mark
    (an earlier format's `last` values carry no check, so they are not taken). A file with
    anything else to repair is refused with the recovery hint, as any damaged file is: that
    repair retires records, which is never done unasked. The epoch rises, so processes that
    have the file open reload it (and a botvault of the earlier format refuses it)."""
    image, findings = rebuild(path, read_all(fd), boot, now_ns, 0)
    if len(findings) != 1 or "earlier botvault" not in findings[0]:
        raise FormatError(f"{path}: nonce state of an earlier format that does not verify "
                          f"({'; '.join(findings[1:]) or 'unreadable'})", hint=RECOVER_HINT)
    write_image(fd, image, sync)


def read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, off = [], 0
    while off < size:
        chunk = os.pread(fd, size - off, off)
        if not chunk:
            break
        chunks.append(chunk)
        off += len(chunk)
    return b"".join(chunks)


Kept = tuple[bytes, int, int]  # key, last, mark


def rebuild(path: Path, data: bytes, boot: str, now_ns: int,
            margin_ns: int) -> tuple[bytes, list[str]]:
    """A repaired image of `data` and what was wrong; (data, []) when nothing was.

    Records that verify keep their slot and position. Every other used or missing slot is
    retired (tombstoned, never reused), and the recovery floor rises to now + margin: a
    counter without a live record starts above the floor when next used.
    """
    known = (VERSION, *OLD_VERSIONS)
    if data[:8] == MAGIC and len(data) >= HEAD.size and HEAD.unpack_from(data)[1] not in known:
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
        header = parse_header(path, buf, old_ok=True)
    except FormatError as exc:
        findings.append(f"{exc.message}: no record can be verified, all are dropped")
    records: list[Kept | None] = []
    if header is not None and header.version != VERSION:
        findings.append(f"the file is in format {header.version} of an earlier botvault: "
                        f"rewritten in format {VERSION}, every counter resuming from its "
                        "durable mark")
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
    seed = vol_seed(file_id)
    for slot, rec in enumerate(records):
        key, last, mark = rec or (TOMBSTONE, 0, 0)
        off = vol_offset(slot)
        out[off:off + 16] = pack_vol(seed, off, max(last, mark - MAX_DELTA), mark)
        for which in (0, 1):
            off = entry_offset(slot, which)
            out[off:off + ENTRY.size] = pack_entry(file_id, slot, which, key, mark)
    return bytes(out), findings


def _sort_records(path: Path, buf: bytes, header: Header, boot: str,
                  findings: list[str]) -> list[Kept | None]:
    """Per slot up to the last used or counted one: what to keep, or None to retire."""
    fid = header.file_id
    # An earlier format's volatile fields have no check: resume from the durable marks.
    same_boot = header.version == VERSION and boot_matches(buf, fid, boot)
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
            try:  # a damaged last value: the copies still bound everything handed out
                (key, mark), rebuilt = durable_point(path, buf, fid, slot), True
            except FormatError:
                findings.append(f"{exc.message}: retired")
                continue
            findings.append(f"{exc.message}: resumes from its durable mark {mark}")
        if key in owners:
            findings.append(f"records {owners[key]} and {slot} hold one counter: both retired")
            records[owners[key]] = None
        elif key != TOMBSTONE:
            owners[key] = slot
            vol = None if rebuilt else read_vol(buf, vol_seed(fid), vol_offset(slot))
            records[slot] = (key, mark if vol is None else vol[0], mark)
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

"""NonceStore in one process: the rule, units, the file format, damage, recovery, power loss.

The multi-process and SIGKILL harnesses are in test_nonces_crash.py.
"""

from __future__ import annotations

import os
import random
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botvault.errors import FormatError, InsecurePermissionsError, InvalidInputError
from botvault.nonces import (
    MAX_COUNT,
    UNITS,
    NonceAheadWarning,
    NonceStore,
)
from botvault.nonces import layout as nf

# Counters pushed far ahead of the clock on purpose would warn in many tests; the warning
# itself is tested with its own filter.
pytestmark = pytest.mark.filterwarnings("ignore::botvault.nonces.NonceAheadWarning")

T0 = 1_750_000_000_000_000_000  # a fixed wall clock, ns
NS = {"ms": 1_000_000, "us": 1_000, "10ns": 10}
VOL0 = nf.vol_offset(0)  # last, confirmed mark of slot 0


def entry(slot: int, which: int) -> int:
    """Offset of a slot's high-water copy A (0) or B (1)."""
    return nf.entry_offset(slot, which)


class Clock:
    """An injectable wall clock that only moves when told to."""

    def __init__(self, ns: int = T0) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


class Snapshots:
    """A sync function that records the file as of each sync (the bytes a power loss keeps)
    and checks that no sync carries both copies of anything.

    It does not fsync: these tests check the protocol, not the disk.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.last = b""

    def __call__(self, fd: int) -> None:
        self.calls += 1
        current = os.pread(fd, os.fstat(fd).st_size, 0)
        if self.last:
            check_one_side_in_flight(self.last, current)
        self.last = current


def power_loss(path: Path, durable: bytes, rnd: random.Random | None = None) -> None:
    """Put the file back to the bytes last synced, or (rnd) a per-sector mix with the current
    bytes, as a disk that wrote back some pages after the last sync would hold."""
    data = bytearray(durable)
    if rnd is not None:
        current = path.read_bytes()
        for start in range(0, len(data), 512):
            if rnd.random() < 0.5:
                data[start:start + 512] = current[start:start + len(data[start:start + 512])]
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, len(data))
        os.pwrite(fd, bytes(data), 0)
    finally:
        os.close(fd)


def booted(name: str) -> Callable[[], str]:
    return lambda: name


def patch(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def flip(path: Path, offset: int) -> None:
    byte = path.read_bytes()[offset]
    patch(path, offset, bytes((byte ^ 0x5A,)))


@pytest.fixture
def state(home: Path) -> Path:
    return home / "vault.bv.nonces"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(state: Path, clock: Clock) -> Iterator[NonceStore]:
    with NonceStore(state, clock_ns=clock, boot_id=lambda: "boot-1", sync=Snapshots()) as s:
        yield s


# -- the rule and the units -----------------------------------------------------------------

@pytest.mark.parametrize("unit", UNITS)
def test_first_nonce_is_the_clock_in_the_unit(store: NonceStore, unit: str) -> None:
    assert store.next(f"k-{unit}", unit) == T0 // NS[unit]


def test_unit_table() -> None:
    assert UNITS == ("ms", "us", "10ns")
    assert T0 // NS["ms"] * 1000 == T0 // NS["us"]
    assert T0 // NS["us"] * 100 == T0 // NS["10ns"]


def test_next_is_max_of_last_plus_one_and_the_clock(store: NonceStore, clock: Clock) -> None:
    first = store.next("k", "ms")
    assert store.next("k", "ms") == first + 1  # clock still: last + 1
    clock.ns += 5_000_000_000
    assert store.next("k", "ms") == clock.ns // 1_000_000  # clock ahead: the clock
    clock.ns -= 3_600_000_000_000  # clock set back an hour: never backwards
    with pytest.warns(NonceAheadWarning, match="about 60 minutes ahead"):
        assert store.next("k", "ms") == (clock.ns + 3_600_000_000_000) // 1_000_000 + 1


def test_runs_ahead_only_when_allocations_outpace_the_unit(store: NonceStore,
                                                           clock: Clock) -> None:
    for _ in range(100):
        clock.ns += 1_000_000
        assert store.next("k", "ms") == clock.ns // 1_000_000
    assert store.ahead_of_clock("k", "ms") == 0.0
    store.allocate("k", "ms", 500)
    assert store.ahead_of_clock("k", "ms") == pytest.approx(0.5, abs=0.002)


def test_allocate_returns_consecutive_values(store: NonceStore) -> None:
    block = store.allocate("k", "us", 1000)
    assert len(block) == 1000
    assert block.step == 1
    assert block[0] == T0 // 1000
    assert store.next("k", "us") == block[-1] + 1
    assert store.peek("k") == block[-1] + 1


def test_counters_are_independent(store: NonceStore) -> None:
    a = store.allocate("a", "us", 10)
    assert store.next("b", "us") == a[0]
    assert store.peek("a") == a[-1]


def test_peek_does_not_allocate(store: NonceStore) -> None:
    assert store.peek("nothing") is None
    assert store.ahead_of_clock("nothing", "ms") == 0.0
    value = store.next("k", "ms")
    assert store.peek("k") == value
    assert store.peek("k") == value
    assert store.next("k", "ms") == value + 1


@pytest.mark.parametrize(("unit", "count", "counter_id"), [
    ("s", 1, "k"), ("MS", 1, "k"), ("", 1, "k"),
    ("ms", 0, "k"), ("ms", -1, "k"), ("ms", MAX_COUNT + 1, "k"), ("ms", True, "k"),
    ("ms", 1, ""), ("ms", 1, "a b"), ("ms", 1, "caf\u00e9"), ("ms", 1, "x" * 129),
])
def test_bad_arguments_are_refused(store: NonceStore, unit: str, count: int,
                                   counter_id: str) -> None:
    with pytest.raises(InvalidInputError):
        store.allocate(counter_id, unit, count)
    if count == 1 and count is not True:
        with pytest.raises(InvalidInputError):
            store.next(counter_id, unit)


@pytest.mark.parametrize(("old", "new"), [("s", "ms"), ("ms", "ns"), ("10ns", "")])
def test_unknown_units_are_refused(store: NonceStore, old: str, new: str) -> None:
    with pytest.raises(InvalidInputError, match="nonce unit must be one of ms, us, 10ns"):
        store.check_unit_change("k", old, new)
    with pytest.raises(InvalidInputError):
        store.ahead_of_clock("k", old if old not in UNITS else new)


def test_bad_reserve_is_refused(state: Path) -> None:
    with pytest.raises(InvalidInputError):
        NonceStore(state, reserve=-1)


def test_closed_store_refuses(state: Path) -> None:
    s = NonceStore(state)
    s.close()
    s.close()
    with pytest.raises(ValueError, match="closed"):
        s.next("k", "ms")


# -- running ahead of the clock ---------------------------------------------------------------

def test_ahead_warning_once_per_process_and_counter(state: Path, clock: Clock) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with NonceStore(state, clock_ns=clock, boot_id=lambda: "b") as one:
            one.allocate("k", "ms", 9_000)
            assert not caught  # 9 s ahead: fine
            one.allocate("k", "ms", 2_000)
            one.allocate("k", "ms", 2_000)
            one.allocate("other", "ms", 20_000)
        with NonceStore(state, clock_ns=clock, boot_id=lambda: "b") as two:
            two.allocate("k", "ms", 2_000)
    ahead = [w for w in caught if issubclass(w.category, NonceAheadWarning)]
    assert len(ahead) == 2
    assert "k stands 11.0 s ahead" in str(ahead[0].message)
    assert ahead[0].filename == __file__  # points at the caller


# -- changing units ---------------------------------------------------------------------------

def test_unit_change_to_the_same_unit_says_nothing(store: NonceStore) -> None:
    store.next("k", "ms")
    assert store.check_unit_change("k", "ms", "ms") is None


@pytest.mark.parametrize(("old", "new"), [("ms", "us"), ("ms", "10ns"), ("us", "10ns")])
def test_unit_change_to_a_finer_unit_warns(store: NonceStore, old: str, new: str) -> None:
    store.next("k", old)
    text = store.check_unit_change("k", old, new)
    assert text is not None
    assert f"clients that still make {old} clock nonces" in text
    assert f"{NS[old] // NS[new]}x" in text
    assert store.next("k", new) == T0 // NS[new]  # the jump the warning announced


@pytest.mark.parametrize(("old", "new"), [("us", "ms"), ("10ns", "ms"), ("10ns", "us")])
def test_unit_change_to_a_coarser_unit_is_refused(store: NonceStore, old: str,
                                                   new: str) -> None:
    store.next("k", old)
    with pytest.raises(InvalidInputError, match=r"stands about .* years ahead") as info:
        store.check_unit_change("k", old, new)
    assert info.value.hint is not None
    assert "new API key" in info.value.hint


def test_unit_change_tolerates_a_few_seconds_ahead(store: NonceStore, clock: Clock) -> None:
    store.allocate("k", "ms", 4_000)  # 4 s ahead in ms
    assert store.check_unit_change("k", "us", "ms") is None
    store.allocate("k", "ms", 2_000)
    with pytest.raises(InvalidInputError, match=r"6\.0 s ahead"):
        store.check_unit_change("k", "us", "ms")
    clock.ns += 10_000_000_000
    assert store.check_unit_change("k", "us", "ms") is None


def test_unit_change_of_an_unused_counter(store: NonceStore) -> None:
    assert store.check_unit_change("fresh", "10ns", "ms") is None
    assert store.check_unit_change("fresh", "ms", "10ns") is not None


# -- the file ---------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_new_file_is_0600_whatever_the_umask(home: Path, umask: int) -> None:
    state = home / "s.nonces"
    old = os.umask(umask)
    try:
        NonceStore(state).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert sorted(p.name for p in home.iterdir()) == ["s.nonces"]  # no temp file left


def test_new_file_layout(state: Path, store: NonceStore) -> None:
    store.next("k", "ms")
    data = state.read_bytes()
    assert data[:8] == b"BVNONCE\x00"
    assert int.from_bytes(data[8:10], "little") == 2  # format 2: checked volatile fields
    assert len(data) == nf.INITIAL_SIZE == 32768
    for which in (0, 1):
        assert data[entry(0, which):entry(0, which) + 16] == nf.counter_key("k")
    assert int.from_bytes(data[VOL0:VOL0 + 8], "little") == T0 // NS["ms"]


def test_an_existing_file_is_not_replaced(state: Path, clock: Clock) -> None:
    with NonceStore(state, clock_ns=clock) as one:
        value = one.next("k", "ms")
        ino = state.stat().st_ino
        with NonceStore(state, clock_ns=clock) as two:
            assert two.next("k", "ms") == value + 1
    assert state.stat().st_ino == ino


def test_symlink_is_refused(home: Path) -> None:
    real = home / "real.nonces"
    NonceStore(real).close()
    link = home / "link.nonces"
    link.symlink_to(real)
    with pytest.raises(InsecurePermissionsError, match="symlink"):
        NonceStore(link)
    dangling = home / "dangling.nonces"
    dangling.symlink_to(home / "nowhere")
    with pytest.raises(InsecurePermissionsError, match="symlink"):
        NonceStore(dangling)
    assert not (home / "nowhere").exists()


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666, 0o660])
def test_writable_by_others_is_refused(state: Path, mode: int) -> None:
    NonceStore(state).close()
    state.chmod(mode)
    with pytest.raises(InsecurePermissionsError, match="writable by other users") as info:
        NonceStore(state)
    assert info.value.hint == f"run: chmod 600 {state}"
    with pytest.raises(InsecurePermissionsError):
        NonceStore.recover(state)


def test_readable_by_others_is_accepted(state: Path) -> None:
    NonceStore(state).close()
    state.chmod(0o644)  # the state is not secret
    NonceStore(state).close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file away")
def test_foreign_owner_is_refused(state: Path) -> None:
    NonceStore(state).close()
    os.chown(state, 65534, 65534)
    with pytest.raises(InsecurePermissionsError, match="owned by uid 65534"):
        NonceStore(state)


# -- damage is detected ----------------------------------------------------------------------

def _used(state: Path, counters: int = 3) -> dict[str, int]:
    with NonceStore(state, boot_id=lambda: "boot-1", sync=Snapshots()) as s:
        return {f"c{i}": s.allocate(f"c{i}", "us", 5)[-1] for i in range(counters)}


def _mark(state: Path, slot: int) -> int:
    vol = nf.read_vol(state.read_bytes(), nf.vol_seed(_file_id(state)), nf.vol_offset(slot))
    assert vol is not None
    return vol[1]


@pytest.mark.parametrize(("offset", "message"), [
    (0, "bad magic"), (8, "unsupported nonce state version"), (10, "impossible sizes"),
    (33, "header is corrupt"), (50, "header is corrupt"),
])
def test_damaged_header_is_detected(state: Path, offset: int, message: str) -> None:
    _used(state)
    flip(state, offset)
    with pytest.raises(FormatError, match=message) as info:
        NonceStore(state, boot_id=lambda: "boot-1")
    assert info.value.hint is not None


def test_one_damaged_record_count_is_survived_two_are_not(state: Path) -> None:
    _used(state)
    flip(state, nf.COUNT_OFFS[0] + 1)
    NonceStore(state, boot_id=lambda: "boot-1").close()
    flip(state, nf.COUNT_OFFS[1] + 1)
    with pytest.raises(FormatError, match="both record count copies"):
        NonceStore(state, boot_id=lambda: "boot-1")


@pytest.mark.parametrize("size", [0, 100, 4096, nf.INITIAL_SIZE - 1, nf.INITIAL_SIZE + 5000])
def test_truncated_file_is_detected(state: Path, size: int) -> None:
    _used(state)
    os.truncate(state, size)
    with pytest.raises(FormatError, match="truncated") as info:
        NonceStore(state)
    assert info.value.hint is not None
    assert "NonceStore.recover" in info.value.hint


@pytest.mark.parametrize("boot", ["boot-1", "boot-2"])
def test_file_cut_at_a_chunk_boundary_is_detected(state: Path, boot: str) -> None:
    _used(state, counters=300)  # a second chunk
    assert state.stat().st_size == nf.INITIAL_SIZE + nf.CHUNK_SIZE
    os.truncate(state, nf.INITIAL_SIZE)
    with pytest.raises(FormatError, match=r"lost records \(it counts 300, holds 256\)"):
        NonceStore(state, boot_id=booted(boot))


@pytest.mark.parametrize("byte", [3, 20, 30])  # key, value, checksum
def test_damage_to_either_copy_is_survived(state: Path, byte: int) -> None:
    with NonceStore(state, boot_id=lambda: "boot-1", sync=Snapshots(), reserve=0) as s:
        handed = {"c0": s.next("c0", "us")}
    for round_ in range(6):
        flip(state, entry(0, round_ % 2) + byte)  # the newest mark is in both copies
        with NonceStore(state, boot_id=booted(f"boot-{round_ + 2}"), sync=Snapshots(),
                        reserve=0) as s:
            assert s.next("c0", "us") > handed["c0"]
            handed["c0"] = s.next("c0", "us")  # reserve 0: every nonce raises the mark


@pytest.mark.parametrize("boot", ["boot-1", "boot-2"])
def test_both_copies_damaged_is_refused_with_a_recovery_hint(state: Path, boot: str) -> None:
    _used(state)
    flip(state, entry(1, 0) + 20)
    flip(state, entry(1, 1) + 3)
    with pytest.raises(FormatError, match="record 1 is corrupt") as info:
        NonceStore(state, boot_id=booted(boot))
    assert info.value.hint is not None
    assert "NonceStore.recover(path)" in info.value.hint


def test_copies_naming_two_counters_are_refused(state: Path) -> None:
    _used(state)
    patch(state, entry(0, 0), nf.pack_entry(_file_id(state), 0, 0, nf.counter_key("x"), 10**18))
    with pytest.raises(FormatError, match="copies name different counters"):
        NonceStore(state, boot_id=lambda: "boot-1")


def test_mark_above_its_durable_copies_is_refused(state: Path) -> None:
    _used(state)
    mark = _mark(state, 0)
    patch(state, VOL0, nf.pack_vol(nf.vol_seed(_file_id(state)), VOL0, mark, mark + 1))
    with pytest.raises(FormatError, match="record 0 is inconsistent"):
        NonceStore(state, boot_id=lambda: "boot-1")


def test_uncounted_record_after_a_gap_is_refused(state: Path) -> None:
    _used(state)
    for which in (0, 1):
        patch(state, entry(1, which), bytes(32))
        patch(state, nf.COUNT_OFFS[which], nf.pack_count(_file_id(state), which, 1, 9 + which))
    with pytest.raises(FormatError, match="hole at record 1"):
        NonceStore(state, boot_id=lambda: "boot-1")


def test_counted_record_that_is_gone_is_refused(state: Path) -> None:
    _used(state)
    for which in (0, 1):
        patch(state, entry(1, which), bytes(32))
    with pytest.raises(FormatError, match="record 1 is corrupt"):
        NonceStore(state, boot_id=lambda: "boot-1")


def _file_id(state: Path) -> bytes:
    return nf.parse_header(state, state.read_bytes()).file_id


def _forge(state: Path, slot: int, counter: str, value: int) -> None:
    for which in (0, 1):
        patch(state, entry(slot, which),
              nf.pack_entry(_file_id(state), slot, which, nf.counter_key(counter), value))


def test_two_records_for_one_counter_are_refused(state: Path) -> None:
    _used(state)
    _forge(state, 1, "c0", 10**18)
    with pytest.raises(FormatError, match="two nonce records hold one counter"):
        NonceStore(state, boot_id=lambda: "boot-2")


def test_damaged_boot_block_counts_as_a_reboot(state: Path) -> None:
    handed = _used(state)
    mark = _mark(state, 0)
    assert mark > handed["c0"]
    flip(state, nf.BOOT_OFF + 2)
    with NonceStore(state, boot_id=lambda: "boot-1") as s:
        assert s.peek("c0") == mark  # resumed from the durable mark, not from `last`


def test_a_new_boot_drops_records_the_count_does_not_vouch_for(state: Path) -> None:
    _used(state)  # counts 3
    fid = _file_id(state)
    patch(state, entry(3, 1), b"\x17" * 32)  # created, never counted, B garbled by the cut
    patch(state, entry(3, 0), nf.pack_entry(fid, 3, 0, nf.counter_key("late"), 10))
    for which in (0, 1):  # a later creation, also never counted
        patch(state, entry(4, which), nf.pack_entry(fid, 4, which, nf.counter_key("later"), 9))
    with NonceStore(state, boot_id=lambda: "boot-2") as s:
        assert s.peek("late") is None
        assert s.peek("later") is None
        assert s.peek("c2") is not None


def test_a_creation_cut_before_its_second_copy_is_empty(state: Path) -> None:
    handed = _used(state)
    patch(state, entry(3, 0), b"\x17" * 32)  # copy A garbled by a power cut, B never written
    with NonceStore(state, boot_id=lambda: "boot-2") as s:
        assert s.next("c9", "us") > 0
        assert s.next("c2", "us") > handed["c2"]
    with NonceStore(state, boot_id=lambda: "boot-2") as s:
        assert s.peek("c9") is not None


# -- recovery ---------------------------------------------------------------------------------

def test_recover_leaves_a_healthy_file_alone(state: Path) -> None:
    _used(state)
    before = state.read_bytes()
    assert NonceStore.recover(state, boot_id=lambda: "boot-1") == []
    assert state.read_bytes() == before


def test_recover_restarts_lost_counters_above_the_floor(state: Path, clock: Clock) -> None:
    with NonceStore(state, clock_ns=clock, boot_id=lambda: "b") as s:
        handed = {f"c{i}": s.allocate(f"c{i}", "ms", 3000)[-1] for i in range(3)}
    flip(state, entry(1, 0) + 20)
    flip(state, entry(1, 1) + 20)
    findings = NonceStore.recover(state, margin_s=600, clock_ns=clock, boot_id=lambda: "b")
    assert findings == ["records [1] fail their checksums or are missing (the file counts 3): "
                        "retired"]
    with NonceStore(state, clock_ns=clock, boot_id=lambda: "b") as s:
        assert s.next("c1", "ms") == (clock.ns + 600 * 10**9) // NS["ms"] + 1
        assert s.next("c0", "ms") == handed["c0"] + 1
        assert s.next("c2", "ms") == handed["c2"] + 1
        assert s.next("new", "us") == (clock.ns + 600 * 10**9) // NS["us"] + 1
    assert NonceStore.recover(state, clock_ns=clock, boot_id=lambda: "b") == []


@pytest.mark.parametrize("damage", ["magic", "truncate-b", "truncate-a", "hole", "duplicate",
                                    "inconsistent", "count", "both-copies"])
def test_recover_repairs_every_refused_file(state: Path, damage: str) -> None:
    handed = _used(state, counters=5)
    if damage == "magic":
        flip(state, 0)
    elif damage.startswith("truncate"):
        os.truncate(state, entry(3, 1) + 7 if damage == "truncate-b" else entry(2, 0) + 40)
    elif damage == "hole":
        patch(state, entry(1, 0), bytes(32))
        patch(state, entry(1, 1), bytes(32))
    elif damage == "duplicate":
        _forge(state, 1, "c0", 10**18)
    elif damage == "inconsistent":
        patch(state, nf.vol_offset(2), (2**63).to_bytes(8, "little"))
    elif damage == "count":
        patch(state, nf.COUNT_OFFS[0], bytes(16))
        patch(state, nf.COUNT_OFFS[1], bytes(16))
    else:
        patch(state, entry(4, 0), bytes(32))
        patch(state, entry(4, 1), bytes(32))
    with pytest.raises(FormatError):
        NonceStore(state, boot_id=lambda: "boot-1")
    assert NonceStore.recover(state, boot_id=lambda: "boot-1")
    with NonceStore(state, boot_id=lambda: "boot-1") as s:
        for counter, value in handed.items():
            assert s.next(counter, "us") > value
    assert NonceStore.recover(state, boot_id=lambda: "boot-1") == []


def test_recover_is_seen_by_a_store_already_open(state: Path, clock: Clock) -> None:
    with NonceStore(state, clock_ns=clock, boot_id=lambda: "b") as s:
        s.allocate("a", "ms", 10)
        s.allocate("b", "ms", 10)
        patch(state, entry(1, 0) + 20, b"??")  # b's copies, under the open store
        patch(state, entry(1, 1) + 20, b"??")
        assert NonceStore.recover(state, clock_ns=clock, boot_id=lambda: "b", margin_s=60)
        assert s.next("b", "ms") == (clock.ns + 60 * 10**9) // NS["ms"] + 1
        assert s.next("a", "ms") == T0 // NS["ms"] + 10


def test_recover_does_not_rewrite_a_newer_format(state: Path) -> None:
    _used(state)
    patch(state, 8, (nf.VERSION + 1).to_bytes(2, "little"))
    before = state.read_bytes()
    with pytest.raises(FormatError, match="recovery will not rewrite it"):
        NonceStore.recover(state)
    assert state.read_bytes() == before


def test_recover_creates_a_missing_file_above_the_clock(state: Path, clock: Clock) -> None:
    assert "did not exist" in NonceStore.recover(state, clock_ns=clock, margin_s=1)[0]
    with NonceStore(state, clock_ns=clock) as s:
        assert s.next("k", "ms") == T0 // NS["ms"] + 1000 + 1


# -- crash and power loss in one process -------------------------------------------------------

def test_no_sync_per_nonce(state: Path) -> None:
    syncs = Snapshots()
    with NonceStore(state, sync=syncs) as s:
        for _ in range(20_000):
            s.next("k", "10ns")
        for _ in range(20_000):
            s.next("ahead", "ms")  # outpaces the ms clock 20x
    assert syncs.calls < 40


def test_a_killed_process_loses_no_position(state: Path, clock: Clock) -> None:
    dead = NonceStore(state, clock_ns=clock, boot_id=lambda: "b")
    last = dead.allocate("k", "ms", 7)[-1]
    # A SIGKILLed holder leaves only the page cache behind; this store never closes cleanly.
    with NonceStore(state, clock_ns=clock, boot_id=lambda: "b") as s:
        assert s.next("k", "ms") == last + 1
    dead.close()


@pytest.mark.parametrize("seed", range(6))
def test_power_loss_never_repeats_a_nonce(state: Path, seed: int) -> None:
    rnd = random.Random(seed)
    clock, snaps = Clock(), Snapshots()
    handed: dict[str, int] = {}
    for boot in range(5):
        with NonceStore(state, clock_ns=clock, boot_id=booted(f"boot-{boot}"),
                        sync=snaps, reserve=rnd.choice([0, 1_000, 10**6, 10**9])) as s:
            for _ in range(rnd.randrange(50, 400)):
                index = rnd.randrange(80)
                counter = f"c{index}"
                clock.ns += rnd.randrange(-10**8, 10**8)
                block = s.allocate(counter, UNITS[index % 3], rnd.randrange(1, 30))
                assert block[0] > handed.get(counter, 0)
                handed[counter] = block[-1]
        power_loss(state, snaps.last, rnd if seed % 2 else None)
        snaps.last = state.read_bytes()


def test_reboot_resumes_from_the_durable_mark(state: Path, clock: Clock) -> None:
    with NonceStore(state, clock_ns=clock, boot_id=lambda: "one") as s:
        last = s.next("k", "us")
    mark = _mark(state, 0)
    assert last < mark <= last + 2 * 10**6  # the default reserve: 2 s of clock
    with NonceStore(state, clock_ns=clock, boot_id=lambda: "two") as s:
        assert s.next("k", "us") == mark + 1


class PowerCut(Exception):
    """The machine lost power inside a sync."""


class ProcessKilled(Exception):
    """The process died at a sync; the machine (and its page cache) carries on."""


def check_one_side_in_flight(old: bytes, new: bytes) -> None:
    """The protocol's rule: a sync never carries both copies of anything (high-water copies
    A and B, record count copies A and B), and never the header page."""
    old = old.ljust(len(new), b"\0")
    dirty = {p // 4096 for p in range(0, len(new), 4096) if old[p:p + 4096] != new[p:p + 4096]}
    chunk_pages = [(p - nf.HEADER_REGION // 4096) % 5 for p in dirty if p >= 3]
    assert 0 not in dirty or not old.strip(b"\0"), "the header page was rewritten"
    assert not {1, 2} <= dirty, "both record count copies in one sync"
    assert not ({1, 2} & set(chunk_pages) and {3, 4} & set(chunk_pages)), \
        "both high-water copies in one sync"


class CutSync:
    """Syncs (in memory); a process dies at some calls, and the power fails at `cut_at`.

    At a death the sync completes or not (both happen); the page cache keeps everything.
    At the power cut the disk holds the bytes of the previous completed sync, except that
    every 4 KiB page written since was being written back, and each of its 512-byte sectors
    ends up old, new or garbage (a drive without power-loss protection); the file size is
    either. Deaths come often and the cut often just after one: that is when a write left
    unsynced by the dead can meet the next writer's.
    """

    def __init__(self, rnd: random.Random, durable: bytes) -> None:
        self.calls, self.rnd, self.durable = 0, rnd, durable
        self.deaths = {n: rnd.random() < 0.5 for n in rnd.sample(range(1, 40), k=rnd.randrange(6))}
        after_death = min(self.deaths, default=0) + rnd.randrange(1, 4)
        self.cut_at = after_death if rnd.random() < 0.5 else rnd.randrange(1, 60)
        self.deaths.pop(self.cut_at, None)
        self.garbage = rnd.choice([1 / 3, 1.0])  # share of dirty sectors that end up garbage

    def __call__(self, fd: int) -> None:
        self.calls += 1
        current = os.pread(fd, os.fstat(fd).st_size, 0)
        check_one_side_in_flight(self.durable, current)
        if self.calls == self.cut_at:
            self.durable = self._torn(self.durable, current)
            raise PowerCut
        if self.deaths.get(self.calls) is False:
            raise ProcessKilled  # before the sync did anything
        self.durable = current
        if self.calls in self.deaths:
            raise ProcessKilled  # after the sync, before the caller could use it

    def _torn(self, old: bytes, new: bytes) -> bytes:
        size = self.rnd.choice([len(old), len(new)])
        old, out = old.ljust(size, b"\0"), bytearray(new[:size].ljust(size, b"\0"))
        for page in range(0, size, 4096):
            if old[page:page + 4096] == out[page:page + 4096]:
                continue
            for start in range(page, page + 4096, 512):
                if self.rnd.random() < self.garbage:
                    out[start:start + 512] = self.rnd.randbytes(512)
                elif self.rnd.random() < 0.5:
                    out[start:start + 512] = old[start:start + 512]
        return bytes(out)


def _run_until_power_cut(state: Path, sync: CutSync, boot: str, clock: Clock,
                         rnd: random.Random, handed: dict[str, int], many: int) -> bool:
    """Allocate with a process dying now and then; True if the power was cut."""
    todo, reserve = 400, rnd.choice([0, 10**6])
    while todo:
        try:
            with NonceStore(state, clock_ns=clock, boot_id=booted(boot), sync=sync,
                            reserve=reserve) as s:
                while todo:
                    clock.ns += rnd.randrange(-10**6, 2 * 10**6)
                    counter = f"c{rnd.randrange(many)}"
                    value = s.next(counter, "us")
                    assert value > handed.get(counter, 0)
                    handed[counter] = value
                    todo -= 1
        except ProcessKilled:
            continue  # another process of the same boot carries on
        except PowerCut:
            return True
    return False


@pytest.mark.parametrize("seed", range(40))
def test_power_cut_inside_any_sync(state: Path, seed: int) -> None:
    """No sync is a bad moment to die or lose power: the next boot opens without help and
    repeats nothing."""
    rnd, clock = random.Random(seed), Clock()
    handed: dict[str, int] = {}
    many = 300 if seed % 4 == 0 else 6  # sometimes across a chunk boundary (file growth)
    NonceStore(state, boot_id=booted("boot-0")).close()
    for cycle in range(4):
        sync = CutSync(rnd, state.read_bytes())
        if not _run_until_power_cut(state, sync, f"boot-{cycle}", clock, rnd, handed, many):
            continue
        power_loss(state, sync.durable)
        with NonceStore(state, clock_ns=clock, boot_id=booted(f"after-{cycle}")) as s:
            for counter, value in handed.items():
                handed[counter] = s.next(counter, "us")
                assert handed[counter] > value


# -- many counters, threads, fork ---------------------------------------------------------------

def test_thousands_of_counters_in_one_file(state: Path, clock: Clock) -> None:
    sync = Snapshots()
    with NonceStore(state, clock_ns=clock, sync=sync) as early, \
            NonceStore(state, clock_ns=clock, sync=sync) as grower:
        early.next("c0", "us")
        for i in range(3000):
            grower.allocate(f"c{i}", "us", 2)
        assert state.stat().st_size > 3000 * 64
        # `early` maps 4 KiB only: it must notice the growth and find grower's records.
        for i in range(0, 3000, 7):
            before = grower.peek(f"c{i}")
            assert before is not None
            assert early.next(f"c{i}", "us") == before + 1
        early.next("c-new", "us")
        assert grower.peek("c-new") is not None
    with NonceStore(state, clock_ns=clock) as again:
        assert again.peek("c2999") == T0 // 1000 + 1
        assert again.peek("c7") == T0 // 1000 + 2
        assert again.peek("c8") == T0 // 1000 + 1


def test_threads_share_a_store(state: Path) -> None:
    """Threads share one open file, so flock alone does not keep them apart."""
    results: list[list[int]] = [[] for _ in range(4)]
    store = NonceStore(state, reserve=10_000, sync=Snapshots())  # many raises, more races

    def work(out: list[int]) -> None:
        for _ in range(3_000):
            out.append(store.next("k", "us"))

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads between almost any two bytecodes
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
        store.close()
    assert [len(r) for r in results] == [3_000] * 4  # no thread died
    every = [v for r in results for v in r]
    assert len(set(every)) == len(every)
    assert all(r == sorted(r) for r in results)


def test_fork_child_does_not_share_the_parents_lock(state: Path) -> None:
    with NonceStore(state) as s:
        s.next("k", "us")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report its values through the pipe, then leave at once
            try:
                values = [s.next("k", "us") for _ in range(20_000)]
                os.write(write, b"".join(v.to_bytes(8, "little") for v in values))
            finally:
                os._exit(0)
        os.close(write)
        mine = [s.next("k", "us") for _ in range(20_000)]
        raw = b""
        while chunk := os.read(read, 1 << 20):
            raw += chunk
        os.close(read)
        os.waitpid(pid, 0)
    theirs = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
    assert len(theirs) == 20_000
    assert len(set(mine) | set(theirs)) == 40_000


# -- properties ---------------------------------------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 3), st.sampled_from(UNITS), st.integers(1, 40)),
    st.tuples(st.just("clock"), st.integers(-10**10, 10**10), st.just(""), st.just(0)),
    st.tuples(st.sampled_from(["crash", "reboot", "power", "mixed"]), st.just(0), st.just(""),
              st.integers(0, 2**16)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=40), reserve=st.sampled_from([0, 10, 10**6, 10**9]))
def test_nonces_never_decrease(ops: list[tuple[str, int, str, int]], reserve: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state, clock, snaps = Path(tmp) / "s.nonces", Clock(), Snapshots()
        boot = [0]

        def opened() -> NonceStore:
            return NonceStore(state, clock_ns=clock, boot_id=lambda: f"b{boot[0]}",
                              sync=snaps, reserve=reserve)

        store = opened()
        handed: dict[int, int] = {}
        exact: set[int] = set()  # counters whose `last` is known to equal handed[c]
        for op, arg, unit, num in ops:
            if op == "alloc":
                now = clock.ns // NS[unit]
                block = store.allocate(f"k{arg}", unit, num)
                assert block[0] > handed.get(arg, 0)
                assert block[0] >= now
                if arg in exact:
                    assert block[0] == max(handed[arg] + 1, now)
                handed[arg] = block[-1]
                exact.add(arg)
            elif op == "clock":
                clock.ns += arg
            else:
                store.close()
                if op != "crash":
                    boot[0] += 1
                    exact.clear()
                if op in ("power", "mixed"):
                    power_loss(state, snaps.last, random.Random(num) if op == "mixed" else None)
                    snaps.last = state.read_bytes()
                store = opened()
        store.close()

"""Nonce state that never goes back (issue 10, items 11, 12, 14), in real processes.

A full disk (a small tmpfs this test mounts, as root) must not kill a process; a damaged or
lowered `last` value is refused, never trusted; reboots do not push a counter ever further
ahead of the clock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botvault import Vault
from botvault.entries import NS_PER_UNIT
from botvault.errors import FormatError
from botvault.nonces import DEFAULT_RESERVE_NS, NonceStore
from botvault.nonces import layout as nf
from botvault.nonces.counters import MAX_BURST_NS
from tests.test_nonces import T0, Clock, booted, flip, patch

pytestmark = pytest.mark.filterwarnings("ignore::botvault.nonces.NonceAheadWarning")

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A separate interpreter (stdlib plus this repository), as a bot is."""
    return subprocess.run([sys.executable, "-S", "-c", code, *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root only; the test skips otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("no mount command")
    where.mkdir()
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(where)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run([umount, "-l", str(where)], check=False)


def fill(directory: Path) -> None:
    """Write zeros until the file system is full (unbuffered: nothing left to flush)."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = bytes(4096)
        with contextlib.suppress(OSError):
            while os.write(fd, block):
                pass
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


# -- item 11: a full disk never kills a process --------------------------------------------

FULL_DISK_WORKER = """
import errno, sys
from pathlib import Path
from botvault.nonces import NonceStore
store = NonceStore(Path(sys.argv[1]))
before = store.next("c0", "10ns")
try:
    store.next("new-counter", "10ns")
except OSError as exc:
    print("refused", errno.errorcode[exc.errno], str(exc), flush=True)
else:
    print("no error", flush=True)
after = store.next("c0", "10ns")
print("still serving", after > before, flush=True)
"""


def test_the_257th_counter_on_a_full_disk_is_a_clean_error(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", "256k") as fs:
        state = fs / "vault.bv.nonces"
        with NonceStore(state) as s:
            for i in range(nf.SLOTS_PER_CHUNK):  # the first chunk is full
                s.next(f"c{i}", "10ns")
        size = state.stat().st_size
        fill(fs)
        done = python(FULL_DISK_WORKER, str(state))
        # Before: the sparse ftruncate succeeded and the store into the map was SIGBUS.
        assert done.returncode == 0, (done.returncode, done.stderr)
        lines = done.stdout.splitlines()
        assert lines[0].startswith("refused ENOSPC"), lines
        assert "no space left to grow the nonce state file" in lines[0]
        assert lines[1] == "still serving True"
        assert state.stat().st_size == size  # whole chunks still: the growth was undone
        (fs / "filler").unlink()
        with NonceStore(state) as s:  # the file is sound, and grows once there is room
            s.next("new-counter", "10ns")
            assert state.stat().st_size == size + nf.CHUNK_SIZE


def test_growth_allocates_real_blocks(home: Path) -> None:
    state = home / "s.nonces"
    with NonceStore(state) as s:
        for i in range(nf.SLOTS_PER_CHUNK + 1):
            s.next(f"c{i}", "10ns")
    st = state.stat()
    assert st.st_size == nf.INITIAL_SIZE + nf.CHUNK_SIZE
    assert st.st_blocks * 512 >= st.st_size  # no hole a store through the map could hit


def test_the_agent_keeps_serving_other_keys_on_a_full_disk(tmp_path: Path) -> None:
    from botvault.agent import connect
    from botvault.errors import VaultError
    from botvault.nonces import nonce_counter_id, nonce_state_path
    from tests import agent_support as support

    with small_tmpfs(tmp_path / "small", "384k") as fs:
        entries = {name: {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}
                   for name in ("old", "new")}
        keys = support.make_vault(fs / "vault.bv", entries)
        with Vault.open_with_key(keys.path, keys.data_key) as v:
            old = nonce_counter_id(v.get("old"))
        with NonceStore(nonce_state_path(keys.path)) as s:
            s.next(old, "ms")
            for i in range(nf.SLOTS_PER_CHUNK - 1):
                s.next(f"filler-{i}", "ms")
        fill(fs)
        info = support.start(keys)
        try:
            with connect(keys.path) as client:
                first = client.nonces("old", 1)[0]
                with pytest.raises(VaultError, match=r"(?i)no space left"):
                    client.nonces("new", 1)
                assert client.nonces("old", 1)[0] > first
                assert info.process is not None and info.process.poll() is None
        finally:
            support.stop(info)


# -- item 12: the working `last` value is checksummed ----------------------------------------

def _handed_out(state: Path, clock: Clock) -> int:
    with NonceStore(state, clock_ns=clock, boot_id=booted("boot-1")) as s:
        return s.allocate("k", "ms", 100_000)[-1]


@pytest.mark.parametrize("damage", ["lowered", "bit-flip", "high-bit-flip"])
def test_a_damaged_last_value_is_refused(home: Path, clock: Clock, damage: str) -> None:
    state = home / "s.nonces"
    last = _handed_out(state, clock)
    off = nf.vol_offset(0)
    if damage == "lowered":  # as a tool that rewrites the number would
        patch(state, off, (last - 50_000).to_bytes(8, "little"))
    else:
        flip(state, off + (0 if damage == "bit-flip" else 6))
    with pytest.raises(FormatError, match="fails its checksum") as info:
        NonceStore(state, clock_ns=clock, boot_id=booted("boot-1"))
    assert info.value.exit_code == 8
    assert info.value.hint is not None and "recover" in info.value.hint


def test_a_store_in_use_refuses_a_value_lowered_under_it(home: Path, clock: Clock) -> None:
    state = home / "s.nonces"
    with NonceStore(state, clock_ns=clock, boot_id=booted("boot-1")) as s:
        last = s.allocate("k", "ms", 1000)[-1]
        patch(state, nf.vol_offset(0), (last - 500).to_bytes(8, "little"))  # seen by the map
        with pytest.raises(FormatError, match="fails its checksum"):
            s.next("k", "ms")  # before: last - 499, a repeat


def test_a_lowered_value_is_refused_in_another_process(home: Path) -> None:
    state = home / "s.nonces"
    code = ("import sys\nfrom pathlib import Path\nfrom botvault.nonces import NonceStore\n"
            "s = NonceStore(Path(sys.argv[1]))\nprint(s.allocate('k', 'ms', 100_000)[-1])\n")
    done = python(code, str(state))
    assert done.returncode == 0, done.stderr
    last = int(done.stdout)
    patch(state, nf.vol_offset(0), (last - 90_000).to_bytes(8, "little"))
    again = python(code, str(state))
    assert again.returncode != 0
    assert "FormatError" in again.stderr and "fails its checksum" in again.stderr


@settings(max_examples=300, deadline=None)
@given(last=st.integers(0, 2**64 - 2**32 - 1), delta=st.integers(0, nf.MAX_DELTA),
       bit=st.integers(0, 127), slot=st.integers(0, 10_000), other=st.integers(1, 10_000),
       file_id=st.binary(min_size=16, max_size=16))
def test_every_bit_flip_and_every_move_of_a_volatile_field_is_caught(
        last: int, delta: int, bit: int, slot: int, other: int, file_id: bytes) -> None:
    seed, off = nf.vol_seed(file_id), nf.vol_offset(slot)
    packed = nf.pack_vol(seed, off, last, last + delta)
    assert nf.read_vol(packed.rjust(off + 16, b"\0"), seed, off) == (last, last + delta)
    flipped = bytearray(packed)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert nf.read_vol(bytes(flipped).rjust(off + 16, b"\0"), seed, off) is None
    moved = nf.vol_offset(slot + other)  # the same bytes in another slot
    assert nf.read_vol(packed.rjust(moved + 16, b"\0"), seed, moved) is None


def test_recover_resumes_a_damaged_counter_above_everything_it_handed_out(
        home: Path, clock: Clock) -> None:
    state = home / "s.nonces"
    last = _handed_out(state, clock)
    patch(state, nf.vol_offset(0), (last - 50_000).to_bytes(8, "little"))
    findings = NonceStore.recover(state, clock_ns=clock, boot_id=booted("boot-1"), margin_s=0)
    assert any("resumes from its durable mark" in f for f in findings)
    with NonceStore(state, clock_ns=clock, boot_id=booted("boot-1")) as s:
        assert s.next("k", "ms") > last  # the counter kept its place: not retired


def _as_format_1(state: Path) -> None:
    """The file as format 1 wrote it: version 1, volatile fields (last, mark) without check."""
    data = bytearray(state.read_bytes())
    header = nf.parse_header(state, bytes(data))
    old = nf.Header(header.file_id, header.floor_ns, header.created_ns, 1).pack()
    data[:len(old)] = old
    off = nf.vol_offset(0)
    vol = nf.read_vol(bytes(data), nf.vol_seed(header.file_id), off)
    assert vol is not None
    data[off:off + 16] = vol[0].to_bytes(8, "little") + vol[1].to_bytes(8, "little")
    state.write_bytes(bytes(data))


def test_a_format_1_file_is_upgraded_keeping_every_counter(home: Path, clock: Clock) -> None:
    state = home / "s.nonces"
    last = _handed_out(state, clock)
    _as_format_1(state)
    with NonceStore(state, clock_ns=clock, boot_id=booted("boot-1")) as s:
        assert s.next("k", "ms") > last
    assert int.from_bytes(state.read_bytes()[8:10], "little") == nf.VERSION


def test_a_damaged_format_1_file_is_refused_and_recovered(home: Path, clock: Clock) -> None:
    state = home / "s.nonces"
    last = _handed_out(state, clock)
    with NonceStore(state, clock_ns=clock, boot_id=booted("boot-1")) as s:
        s.next("other", "ms")
    _as_format_1(state)
    patch(state, nf.entry_offset(1, 0), bytes(32))  # the second record: both copies lost
    patch(state, nf.entry_offset(1, 1), bytes(32))
    before = state.read_bytes()
    with pytest.raises(FormatError, match="earlier format that does not verify") as info:
        NonceStore(state, clock_ns=clock, boot_id=booted("boot-1"))
    assert info.value.exit_code == 8
    assert state.read_bytes() == before  # retiring records is never done unasked
    findings = NonceStore.recover(state, clock_ns=clock, boot_id=booted("boot-1"), margin_s=0)
    assert any("format 1" in f for f in findings)
    with NonceStore(state, clock_ns=clock, boot_id=booted("boot-1")) as s:
        assert s.next("k", "ms") > last


# -- item 14: reboots do not compound -----------------------------------------------------------

REBOOT_WORKER = """
import sys, time
from pathlib import Path
from botvault.nonces import NonceStore
path, boot, clock_ns, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with NonceStore(path, boot_id=lambda: boot, clock_ns=lambda: clock_ns) as s:
    for _ in range(count):
        s.next("k", "ms")
    print(s.peek("k"))
"""


def _ahead_ms(value: int) -> int:
    return value - T0 // NS_PER_UNIT["ms"]


def test_fifty_reboots_do_not_push_the_counter_ahead(home: Path, clock: Clock) -> None:
    state = home / "s.nonces"
    with NonceStore(state, clock_ns=clock, boot_id=booted("boot-0")) as s:
        before = _ahead_ms(s.allocate("k", "ms", 1_000_000)[-1])  # about 17 minutes ahead
    last = 0
    for reboot in range(1, 51):  # a real process per boot, one nonce each, the clock stopped
        done = python(REBOOT_WORKER, str(state), f"boot-{reboot}", str(T0), "1")
        assert done.returncode == 0, done.stderr
        last = int(done.stdout)
    margin_ms = (DEFAULT_RESERVE_NS + MAX_BURST_NS) // NS_PER_UNIT["ms"] + 50
    # Before: the reserve grew with the distance ahead, which doubled at every reboot.
    assert _ahead_ms(last) <= before + margin_ms


def test_a_busy_counter_gains_at_most_the_burst_per_reboot(home: Path, clock: Clock) -> None:
    state = home / "s.nonces"
    with NonceStore(state, clock_ns=clock, boot_id=booted("boot-0")) as s:
        for _ in range(20):  # a mark raised again and again at once: the burst grows
            s.allocate("k", "ms", 50_000)
        before = _ahead_ms(s.peek("k") or 0)
    for reboot in range(1, 6):
        with NonceStore(state, clock_ns=clock, boot_id=booted(f"boot-{reboot}")) as s:
            for _ in range(20):
                s.allocate("k", "ms", 50_000)
            busy = _ahead_ms(s.peek("k") or 0)
        # what it handed out, plus at most one reserve and one capped burst per reboot
        bound = before + reboot * (20 * 50_000 + (DEFAULT_RESERVE_NS + MAX_BURST_NS) // 10**6)
        assert busy <= bound


def test_the_cli_on_a_full_disk_says_so(tmp_path: Path) -> None:
    from botvault.crypto import FLOOR
    from botvault.nonces import nonce_state_path
    from tests.conftest import PASSPHRASE, kraken_secret

    with small_tmpfs(tmp_path / "small", "384k") as fs:
        path = fs / "vault.bv"
        with Vault.create(path, PASSPHRASE, kdf=FLOOR) as v:
            v.add("a", exchange="kraken-spot", api_key="PUBKEY", api_secret=kraken_secret(),
                  general="full", withdrawal="none")
        with NonceStore(nonce_state_path(path)) as s:
            for i in range(nf.SLOTS_PER_CHUNK):
                s.next(f"filler-{i}", "ms")
        fill(fs)
        done = subprocess.run([sys.executable, "-m", "botvault", "--passphrase-stdin", "nonce",
                               "a", "--vault", str(path)], input=f"{PASSPHRASE}\n", text=True,
                              capture_output=True, timeout=60, check=False, cwd=ROOT)
        # 12: the OS refused (disk full); before: -7, SIGBUS
        assert done.returncode == 12, (done.returncode, done.stderr)
        assert "botvault: error:" in done.stderr
        assert "no space left to grow the nonce state file" in done.stderr
        assert done.stdout == ""

"""NonceStore across real processes: linearizability, SIGKILL at random points, power loss,
and a file growing under several processes at once.

Workers are separate interpreters (`python -S -c`, stdlib plus this repository only) so
that each has its own open file, lock and memory map, as bots do.
"""

from __future__ import annotations

import array
import bisect
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from botvault.nonces import NonceStore
from botvault.nonces import layout as nf
from tests.test_nonces import booted, power_loss

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::botvault.nonces.NonceAheadWarning")]

ROOT = Path(__file__).resolve().parents[1]


LINEAR_WORKER = """
import array, os, sys, time
from pathlib import Path
from botvault.nonces import NonceStore
path, out, go, n, unit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.0005)
store = NonceStore(Path(path))  # every worker races to create the missing file
before, values, after = array.array("q"), array.array("q"), array.array("q")
clock, take = time.monotonic_ns, store.next
for _ in range(n):
    start = clock()
    value = take("shared", unit)
    end = clock()
    before.append(start)
    values.append(value)
    after.append(end)
with open(out, "wb") as f:
    f.write(before.tobytes() + values.tobytes() + after.tobytes())
"""

# Allocates until killed and reports every value it got, unbuffered, before the next call.
# argv: state, report, seed, reserve, boot ("" = the real boot id), snapshot ("" = none),
# clock ("" = the real clock, else a frozen one in ns: the counters then only count up).
ALLOC_WORKER = """
import os, random, sys, time
from pathlib import Path
from botvault.nonces import NonceStore, default_boot_id, default_sync
path, out, seed, reserve, boot, snap, clock = sys.argv[1:8]
rnd = random.Random(int(seed))

def snapshot_sync(fd):
    os.fsync(fd)
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    tmp = f"{snap}.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, snap)  # under the store's lock: the snapshots are in sync order

report = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
store = NonceStore(Path(path), reserve=int(reserve),
                   boot_id=(lambda: boot) if boot else default_boot_id,
                   sync=snapshot_sync if snap else default_sync,
                   clock_ns=(lambda: int(clock)) if clock else time.time_ns)
while True:
    r = rnd.random()
    if r < 0.01:
        counter, unit = f"n{seed}-{rnd.randrange(10**6)}", "us"
    elif r < 0.6:
        counter, unit = "hot", "us"
    else:
        counter, unit = "warm", "ms"
    value = store.next(counter, unit)
    os.write(report, f"{counter} {value}\\n".encode())
"""

GROW_WORKER = """
import os, sys, time
from pathlib import Path
from botvault.nonces import NonceStore
path, out, go, index, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
store = NonceStore(Path(path))
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.0005)
lines = []
for k in range(n):
    store.next(f"w{index}-{k}", "us")
    lines.append(f"shared-{k % 50} {store.next(f'shared-{k % 50}', 'us')}")
with open(out, "w") as f:
    f.write("\\n".join(lines) + "\\n")
"""


def _spawn(code: str, *args: object, stdout: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-S", "-W", "ignore", "-c", code, *map(str, args)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=stdout,
        stderr=subprocess.DEVNULL)


def _start_together(procs: list[subprocess.Popen[bytes]], go: Path) -> None:
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
    go.touch()


def _reports(paths: list[Path]) -> list[dict[str, list[int]]]:
    """Per worker, per counter: the values it reported, in order (a torn last line dropped)."""
    out = []
    for path in paths:
        per: dict[str, list[int]] = defaultdict(list)
        text = path.read_text() if path.exists() else ""
        for line in text.split("\n")[:-1]:
            counter, value = line.split()
            per[counter].append(int(value))
        out.append(per)
    return out


def _check_reports(reports: list[dict[str, list[int]]]) -> dict[str, int]:
    """Each worker's values increase, no value repeats; returns the max per counter."""
    seen: dict[str, set[int]] = defaultdict(set)
    total: dict[str, int] = defaultdict(int)
    for per in reports:
        for counter, values in per.items():
            assert all(a < b for a, b in itertools.pairwise(values)), counter
            seen[counter].update(values)
            total[counter] += len(values)
    assert {c: len(v) for c, v in seen.items()} == dict(total), "a nonce was handed out twice"
    return {counter: max(values) for counter, values in seen.items()}


@pytest.mark.parametrize("unit", ["us", "ms"])
def test_linearizable_across_8_processes(home: Path, unit: str) -> None:
    state, go, n = home / "v.nonces", home / "go", 10_000
    outs = [home / f"out{i}" for i in range(8)]
    procs = [_spawn(LINEAR_WORKER, state, out, go, n, unit, stdout=subprocess.PIPE)
             for out in outs]
    _start_together(procs, go)
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    assert sorted(p.name for p in home.iterdir()) == ["go", *sorted(o.name for o in outs),
                                                          "v.nonces"]
    calls: list[tuple[int, int, int]] = []  # (end, start, value)
    for out in outs:
        cols = array.array("q", out.read_bytes())
        starts, values, ends = cols[:n], cols[n:2 * n], cols[2 * n:]
        assert all(a < b for a, b in itertools.pairwise(values))
        calls += zip(ends, starts, values, strict=True)
    assert len({value for _, _, value in calls}) == 8 * n
    # If call A ended before call B started, A's value must be smaller.
    calls.sort()
    end_times = [end for end, _, _ in calls]
    prefix_max: list[int] = []
    best = -1
    for _, _, value in calls:
        best = max(best, value)
        prefix_max.append(best)
    for _, start, value in calls:
        earlier = bisect.bisect_left(end_times, start)  # calls that ended strictly before `start`
        assert earlier == 0 or prefix_max[earlier - 1] < value


def test_sigkill_at_random_points(home: Path) -> None:
    state, rnd = home / "v.nonces", random.Random(20240611)
    NonceStore(state).close()
    live: list[tuple[float, bool, Path, subprocess.Popen[bytes]]] = []
    outs: list[Path] = []
    kills = 0
    while kills < 120:
        while len(live) < 4:
            out = home / f"r{len(outs)}"
            outs.append(out)
            # reserve 0 syncs at every nonce, so many kills land between write and sync.
            reserve = rnd.choice([0, 200_000, 2_000_000_000])
            proc = _spawn(ALLOC_WORKER, state, out, len(outs), reserve, "", "", "")
            # Half the workers die at a random time after they start (some while opening the
            # store); the other half at a random time after their first nonce, so that a slow,
            # loaded machine still kills many workers mid-allocation instead of all at start-up.
            live.append((time.monotonic() + rnd.uniform(0.02, 0.25), rnd.random() < 0.5, out,
                         proc))
        live.sort(key=lambda item: item[0])
        deadline, after_first, out, proc = live.pop(0)
        if after_first:
            started = time.monotonic()
            while (not out.exists() or out.stat().st_size == 0) and proc.poll() is None \
                    and time.monotonic() - started < 30:
                time.sleep(0.002)
            deadline = time.monotonic() + rnd.uniform(0.0, 0.2)
        time.sleep(max(0.0, deadline - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    for _, _, _, proc in live:
        proc.kill()
        proc.wait()
    handed = _check_reports(_reports(outs))
    assert {"hot", "warm"} < handed.keys()  # and at least one counter created by a worker
    with NonceStore(state) as store:
        for counter, top in handed.items():
            assert store.next(counter, "us" if counter != "warm" else "ms") > top
    with NonceStore(state, boot_id=booted("after a reboot")) as store:
        for counter, top in handed.items():
            assert store.next(counter, "us" if counter != "warm" else "ms") > top


def test_power_loss_under_load(home: Path) -> None:
    """A frozen clock: only the durable marks stand between a power loss and a repeat."""
    state, snap, rnd = home / "v.nonces", home / "durable", random.Random(7)
    frozen = time.time_ns()

    def snapshot_sync(fd: int) -> None:
        os.fsync(fd)
        snap.write_bytes(os.pread(fd, os.fstat(fd).st_size, 0))

    NonceStore(state, boot_id=booted("boot-0"), sync=snapshot_sync).close()
    handed: dict[str, int] = {}
    outs: list[Path] = []
    for round_ in range(12):
        procs = []
        for _ in range(3):
            outs.append(home / f"r{len(outs)}")
            procs.append(_spawn(ALLOC_WORKER, state, outs[-1], len(outs),
                                rnd.choice([0, 10**6, 10**9]), f"boot-{round_}", snap, frozen))
        time.sleep(rnd.uniform(0.15, 0.35))
        for proc in procs:  # the power goes: everyone dies at once
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait()
        handed.update(_check_reports(_reports(outs)))
        # The disk holds what was last synced; or, every other round, a per-sector mix of
        # that and later page-cache writeback.
        power_loss(state, snap.read_bytes(), rnd if round_ % 2 else None)
        with NonceStore(state, boot_id=booted(f"check-{round_}"), sync=snapshot_sync,
                        clock_ns=lambda: frozen) as s:
            for counter, top in handed.items():
                handed[counter] = s.next(counter, "ms" if counter == "warm" else "us")
                assert handed[counter] > top, (round_, counter)
    assert len(handed) > 3


def test_growth_under_concurrent_processes(home: Path) -> None:
    state, go, n = home / "v.nonces", home / "go", 400
    NonceStore(state).close()
    outs = [home / f"out{i}" for i in range(4)]
    procs = [_spawn(GROW_WORKER, state, out, go, i, n, stdout=subprocess.PIPE)
             for i, out in enumerate(outs)]
    _start_together(procs, go)  # all have mapped the 4 KiB file before it grows
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    _check_reports(_reports(outs))
    data = state.read_bytes()
    file_id = nf.parse_header(state, data).file_id
    assert nf.record_count(state, data, file_id)[0] == 4 * n + 50
    used = [s for s in range(nf.slot_count(len(data))) if not nf.slot_empty(data, file_id, s)]
    assert used == list(range(4 * n + 50))
    with NonceStore(state) as store:  # validates every record: no counter twice
        assert all(store.peek(f"w{i}-{k}") for i in range(4) for k in range(n))

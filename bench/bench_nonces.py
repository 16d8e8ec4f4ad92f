"""Benchmark of the nonce counter (vault.nonces) against a naive counter and clock nonces.

Run from the repository root with the project's interpreter:

    python bench/bench_nonces.py            # full run, about 25 s on 2 cores
    python bench/bench_nonces.py --quick    # smoke run, a few seconds
    python bench/bench_nonces.py --dir DIR  # scratch files in DIR (fsync cost depends on it)

In the same run it measures allocations per second through NonceStore in one process and
across 4 processes; a careful naive counter (flock, read, max(last + 1, clock), write, fsync,
unlock per nonce) in one and 4 processes; and millisecond clock nonces
(int(time.time() * 1000)) from 4 processes, counting duplicates and out-of-order values as
a strict exchange would see them. Figures are printed with their targets and the ratios
against the naive counter; nothing fails on wall-clock time, and the script exits 0 unless
something is broken (a duplicate from NonceStore is broken).
"""

from __future__ import annotations

import argparse
import array
import fcntl
import multiprocessing
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botvault import nonces
from botvault.nonces import NonceStore

PROCS = 4
NS_PER_UNIT = {"ms": 1_000_000, "us": 1_000, "10ns": 10}
SUMMARY_HEADER = "## botvault nonce benchmark summary"


@dataclass(frozen=True)
class Row:
    measure: str
    figure: str
    target: str = ""
    met: bool | None = None  # None: informational

    @property
    def verdict(self) -> str:
        return "—" if self.met is None else ("met" if self.met else "NOT met")


def per_s(rate: float) -> str:
    return f"{rate:,.0f}/s"


def print_table(rows: Sequence[Row]) -> None:
    cells = [("measure", "figure", "target", "met"),
             *((r.measure, r.figure, r.target or "—", r.verdict) for r in rows)]
    widths = [max(len(c) for c in col) for col in zip(*cells, strict=True)]
    for i, row in enumerate(cells):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


# -- workers (top level, so that a spawn start method can import them) -------------------

def store_worker(path: str, unit: str, seconds: float, barrier: Any, out: str) -> None:
    store = NonceStore(Path(path))
    values = array.array("q")
    take, append = store.next, values.append
    barrier.wait()
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        for _ in range(256):
            append(take("bench", unit))
    Path(out).write_bytes(array.array("d", [time.monotonic() - start]).tobytes()
                          + values.tobytes())
    store.close()


def naive_take(fd: int, ns: int) -> int:
    """The careful naive counter: everything durable before the nonce is used."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        last = int.from_bytes(os.pread(fd, 8, 0), "little")
        value = max(last + 1, time.time_ns() // ns)
        os.pwrite(fd, value.to_bytes(8, "little"), 0)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
    return value


def naive_worker(path: str, unit: str, seconds: float, barrier: Any, out: str) -> None:
    fd = os.open(path, os.O_RDWR)
    ns = NS_PER_UNIT[unit]
    values = array.array("q")
    barrier.wait()
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        values.append(naive_take(fd, ns))
    Path(out).write_bytes(array.array("d", [time.monotonic() - start]).tobytes()
                          + values.tobytes())
    os.close(fd)


def clock_worker(path: str, pace: str, seconds: float, barrier: Any, out: str) -> None:
    """Millisecond clock nonces as ccxt and krakenex make them, with a real-time stamp each.

    pace "tight": as fast as possible; "1ms": one request per millisecond, a busy bot.
    """
    del path
    stamps, values = array.array("q"), array.array("q")
    barrier.wait()
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        if pace == "1ms":
            time.sleep(0.001)
        values.append(int(time.time() * 1000))
        stamps.append(time.monotonic_ns())
    Path(out).write_bytes(array.array("d", [time.monotonic() - start]).tobytes()
                          + stamps.tobytes() + values.tobytes())


Worker = Callable[[str, str, float, Any, str], None]


def run_procs(worker: Worker, path: Path, arg: str, seconds: float,
              procs: int) -> tuple[float, list[bytes]]:
    """Start `procs` workers together; (aggregate per second, each worker's raw output)."""
    # fork where it is safe and quick to start; macOS needs spawn.
    ctx = (multiprocessing.get_context("fork") if sys.platform == "linux"
           else multiprocessing.get_context("spawn"))
    barrier = ctx.Barrier(procs)
    outs = [path.with_name(f"{path.name}.out{i}") for i in range(procs)]
    workers = [ctx.Process(target=worker, args=(str(path), arg, seconds, barrier, str(o)))
               for o in outs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"a {worker.__name__} process failed ({w.exitcode})")
    raw = [o.read_bytes() for o in outs]
    elapsed = max(array.array("d", r[:8])[0] for r in raw)
    count = sum((len(r) - 8) // 8 for r in raw)
    if worker is clock_worker:
        count //= 2
    return count / elapsed, [r[8:] for r in raw]


def values_of(raw: list[bytes]) -> list[int]:
    return [v for r in raw for v in array.array("q", r)]


# -- the measurements -----------------------------------------------------------------------

def bench_store_single(path: Path, unit: str, seconds: float) -> tuple[float, int]:
    """(allocations per second in one process, syncs made)."""
    syncs = [0]

    def counting_sync(fd: int) -> None:
        syncs[0] += 1
        nonces.default_sync(fd)

    with NonceStore(path, sync=counting_sync) as store:
        take = store.next
        take("bench", unit)
        syncs[0] = 0
        count, start = 0, time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(1024):
                take("bench", unit)
            count += 1024
        return count / (time.perf_counter() - start), syncs[0]


def strict_exchange(raw: list[bytes]) -> tuple[int, int, int]:
    """(nonces, duplicates, out of order): what a server that wants each nonce above the
    last one it accepted rejects, taking the requests in real-time order."""
    samples: list[tuple[int, int]] = []
    for r in raw:
        cols = array.array("q", r)
        half = len(cols) // 2
        samples += zip(cols[:half], cols[half:], strict=True)
    samples.sort()
    seen: set[int] = set()
    duplicates = out_of_order = 0
    best = -1
    for _, value in samples:
        if value in seen:
            duplicates += 1
        elif value <= best:
            out_of_order += 1
        seen.add(value)
        best = max(best, value)
    return len(samples), duplicates, out_of_order


def measure(workdir: Path, seconds: float) -> list[Row]:
    rows: list[Row] = []
    one_10ns, syncs = bench_store_single(workdir / "one.nonces", "10ns", seconds)
    rows.append(Row("NonceStore, 1 process, unit 10ns", per_s(one_10ns), "≥ 200,000/s",
                    one_10ns >= 200_000))
    rows.append(Row("  syncs during that run", f"{syncs} for {one_10ns * seconds:,.0f} nonces"))
    one_ms, _ = bench_store_single(workdir / "one-ms.nonces", "ms", seconds)
    rows.append(Row("NonceStore, 1 process, unit ms (outpaces the clock)", per_s(one_ms)))

    many, raw = run_procs(store_worker, workdir / "many.nonces", "10ns", seconds, PROCS)
    values = values_of(raw)
    dups = len(values) - len(set(values))
    rows.append(Row(f"NonceStore, {PROCS} processes, unit 10ns", per_s(many), "≥ 100,000/s",
                    many >= 100_000))
    rows.append(Row(f"NonceStore duplicates across {PROCS} processes",
                    f"{dups} of {len(values):,}", "0", dups == 0))

    naive_path = workdir / "naive.counter"
    naive_path.write_bytes(bytes(8))
    naive_one, _ = run_procs(naive_worker, naive_path, "10ns", seconds, 1)
    naive_many, raw = run_procs(naive_worker, naive_path, "10ns", seconds, PROCS)
    naive_values = values_of(raw)
    rows.append(Row("naive flock + fsync counter, 1 process", per_s(naive_one)))
    rows.append(Row(f"naive flock + fsync counter, {PROCS} processes", per_s(naive_many),
                    "", None if len(set(naive_values)) == len(naive_values) else False))
    rows.append(Row("NonceStore / naive, 1 process", f"{one_10ns / naive_one:,.0f}x", "≥ 20x",
                    one_10ns / naive_one >= 20))
    rows.append(Row(f"NonceStore / naive, {PROCS} processes", f"{many / naive_many:,.0f}x",
                    "≥ 20x", many / naive_many >= 20))

    for pace, label in (("tight", "as fast as possible"), ("1ms", "one request per ms each")):
        _, raw = run_procs(clock_worker, workdir / f"clock-{pace}", pace,
                           min(seconds, 0.5) if pace == "tight" else seconds, PROCS)
        total, dup, ooo = strict_exchange(raw)
        rows.append(Row(f"ms clock nonces, {PROCS} processes, {label}",
                        f"{dup:,} duplicates, {ooo:,} out of order in {total:,}; "
                        f"{(dup + ooo) / total:.0%} rejected"))
    if dups:
        raise SystemExit("NonceStore handed out a duplicate nonce: this is a bug")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 0.3 s per figure")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to put the scratch files (default: the system temp dir); "
                             "fsync cost depends on its filesystem (tmpfs makes it free)")
    args = parser.parse_args(argv)
    seconds = 0.3 if args.quick else 2.0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="botvault-bench-nonces-", dir=args.dir) as tmp:
        print(f"botvault nonce benchmark{' (--quick)' if args.quick else ''}: scratch dir {tmp}"
              f", {seconds:g} s per figure\n")
        rows = measure(Path(tmp), seconds)
    print_table(rows)
    print(f"\n{SUMMARY_HEADER}\n")
    print(f"Command: `{shlex.join(['python', 'bench/bench_nonces.py', *sys.argv[1:]])}` "
          f"({time.perf_counter() - started:.0f} s)  ")
    print(f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
          f"{platform.python_version()}\n")
    print("| measure | figure | target | met |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r.measure.strip()} | {r.figure} | {r.target or '—'} | {r.verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

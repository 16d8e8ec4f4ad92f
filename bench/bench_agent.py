"""Benchmarks for the botvault agent: what a round trip to it costs against the same call made
in-process.

Run from the repository root with the project's interpreter:

    python bench/bench_agent.py            # 10,000 calls per measure, about 15 s on 2 cores
    python bench/bench_agent.py --quick    # 1,000 calls per measure

A real agent is started (as `botvault unlock` does) for a scratch vault in a temporary
directory. Each measure times single calls with `perf_counter_ns` and reports p50 / p99 and
calls per second, next to the in-process baseline measured in the same run (`Vault.next_nonce`,
`Vault.get`, and `sign_spot` for the HMAC alone). Nothing fails on wall-clock time: each
target is printed with whether it was met, and the script exits 0 unless something broke.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.` as a script too

from bench.tables import print_table
from botvault import Vault
from botvault.agent import AgentClient, start_agent
from botvault.agent.protocol import encode_frame
from botvault.crypto import FLOOR
from botvault.exchanges.kraken import sign_spot

SUMMARY_HEADER = "## botvault agent benchmark summary"
ENTRY = "bench-spot"
PATH = "/0/private/AddOrder"
ORDER = "pair=XBTUSD&type=buy&ordertype=limit&price=27500.5&volume=0.01&userref=42"


@dataclass(frozen=True)
class Timing:
    """Per-call latencies of one measure, in nanoseconds."""

    label: str
    samples: list[int]
    total_s: float

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # microseconds

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) / 1000

    @property
    def p99(self) -> float:
        return self.pct(0.99)

    @property
    def per_second(self) -> float:
        return len(self.samples) / self.total_s


@dataclass(frozen=True)
class Row:
    measure: str
    figure: str
    target: str
    met: bool | None

    @property
    def verdict(self) -> str:
        return "—" if self.met is None else ("met" if self.met else "NOT met")


def timed(label: str, fn: Callable[[], object], n: int, warmup: int = 200) -> Timing:
    for _ in range(warmup):
        fn()
    gc.collect()
    gc.disable()  # a collection in the middle would land in p99 and say nothing about us
    try:
        samples = []
        clock = time.perf_counter_ns
        began = time.perf_counter()
        for _ in range(n):
            t0 = clock()
            fn()
            samples.append(clock() - t0)
        total = time.perf_counter() - began
    finally:
        gc.enable()
    return Timing(label, samples, total)


def compare(title: str, pairs: Sequence[tuple[Timing, Timing]]) -> None:
    rows = []
    for base, agent in pairs:
        rows.append((base.label, f"{base.p50:.1f}", f"{agent.p50:.1f}",
                     f"{agent.p50 / base.p50:.1f}x", f"{base.p99:.1f}", f"{agent.p99:.1f}",
                     f"{base.per_second:,.0f}", f"{agent.per_second:,.0f}"))
    print_table(title, ("measure", "in-proc p50 µs", "agent p50 µs", "ratio", "in-proc p99 µs",
                        "agent p99 µs", "in-proc /s", "agent /s"), rows)


def make_vault(workdir: Path) -> tuple[Path, bytes, str]:
    secret = base64.b64encode(os.urandom(64)).decode()
    with Vault.create(workdir / "store" / "vault.bv", "bench passphrase", kdf=FLOOR) as v:
        v.add(ENTRY, exchange="kraken-spot", api_key="BENCHPUBLICKEY", api_secret=secret,
              general="full", withdrawal="none")
        return v.path, bytes(v._data_key), secret


_PARALLEL_WORKER = """
import sys, time
from pathlib import Path
from botvault.agent import AgentClient
client = AgentClient(Path(sys.argv[1]))
n = int(sys.argv[2])
client.next_nonce(sys.argv[3])
t = time.perf_counter()
for _ in range(n):
    client.next_nonce(sys.argv[3])
print(time.perf_counter() - t)
"""


def parallel_nonces(socket_path: Path, processes: int, n: int) -> float:
    """Nonces per second over all of `processes` clients running at once."""
    workers = [subprocess.Popen([sys.executable, "-c", _PARALLEL_WORKER, str(socket_path),
                                 str(n), ENTRY], stdout=subprocess.PIPE, text=True)
               for _ in range(processes)]
    longest = max(float(w.communicate(timeout=300)[0]) for w in workers)
    return processes * n / longest


_ECHO_WORKER = """
import socket, sys
c = socket.socket(socket.AF_UNIX)
c.connect(sys.argv[1])
while data := c.recv(65536):
    c.sendall(data)
"""


def _pin(pids: list[int], cpu: int | None) -> None:
    """Every thread of `pids` (0: this process) on `cpu`, or back on every CPU (None)."""
    cpus = set(range(os.cpu_count() or 1)) if cpu is None else {cpu}
    for pid in pids:
        for tid in (os.listdir(f"/proc/{pid}/task") if pid else [0]):
            os.sched_setaffinity(int(tid), cpus)


def echo_floor(workdir: Path, n: int, socket_path: Path, agent_pid: int | None = None,
               *, pinned: bool = False) -> tuple[Timing, Timing, Timing]:
    """The machine's floor against the agent, in one interleaved run: a bare unix-socket echo
    to another Python process of the very frame `next_nonce` sends, the same frame sent raw
    to the agent (its answer read whole), and `AgentClient.next_nonce`. Blocks of each take
    turns, so load that comes and goes weighs on all three alike.

    `pinned`: this process, the echo worker and every thread of the agent on one CPU, so
    that all three pay the same for being woken. Left to the scheduler, a peer woken on the
    other CPU of this VM costs 40-60 us a round trip, and which of the three it happens to
    is a coin toss per run (measured from 0.35x to 11x for one and the same code)."""
    frame = encode_frame({"op": "nonce", "name": ENTRY, "count": 1})
    path = workdir / "run" / f"echo-{int(pinned)}.sock"
    samples: dict[str, list[int]] = {"echo": [], "raw": [], "client": []}
    totals = dict.fromkeys(samples, 0.0)
    with socket.socket(socket.AF_UNIX) as listener, AgentClient(socket_path) as client, \
            socket.socket(socket.AF_UNIX) as raw:
        listener.bind(str(path))
        listener.listen()
        worker = subprocess.Popen([sys.executable, "-c", _ECHO_WORKER, str(path)])
        conn, _ = listener.accept()
        raw.connect(str(socket_path))
        client.status()  # connected: its thread in the agent exists, and is pinned too
        if pinned and agent_pid is not None:
            _pin([0, worker.pid, agent_pid], 0)
        with conn:

            def echo() -> None:
                conn.sendall(frame)
                got = len(conn.recv(65536))
                while got < len(frame):
                    got += len(conn.recv(65536))

            def raw_nonce() -> None:
                raw.sendall(frame)
                answer = raw.recv(65536)
                while len(answer) < 4 or len(answer) < 4 + int.from_bytes(answer[:4], "big"):
                    answer += raw.recv(65536)

            calls = {"echo": echo, "raw": raw_nonce, "client": lambda: client.next_nonce(ENTRY)}
            block = max(100, n // 10)
            for _ in range(max(1, n // block)):
                for name, fn in calls.items():
                    timing = timed(name, fn, block, warmup=20)
                    samples[name] += timing.samples
                    totals[name] += timing.total_s
        worker.wait(10)
        if pinned and agent_pid is not None:
            _pin([0, agent_pid], None)
    return (Timing("raw unix-socket echo of the nonce frame", samples["echo"], totals["echo"]),
            Timing("the nonce frame sent raw to the agent", samples["raw"], totals["raw"]),
            Timing("AgentClient.next_nonce", samples["client"], totals["client"]))


def run(n: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bv-bench-") as tmp:
        workdir = Path(tmp)
        vault_path, key, secret = make_vault(workdir)
        os.mkdir(workdir / "run", 0o700)
        info = start_agent(vault_path, key, ttl=3600, idle=3600, allow_withdrawal=False,
                           socket_path=workdir / "run" / "agent.sock")
        try:
            floors = echo_floor(workdir, n, info.socket_path)
            pinned = echo_floor(workdir, n, info.socket_path, info.pid, pinned=True) \
                if sys.platform.startswith("linux") else None
            return measure(n, vault_path, key, secret, info.socket_path, floors, pinned)
        finally:
            with AgentClient(info.socket_path) as client:
                client.lock()
            if info.process is not None:
                info.process.wait(10)


def measure(n: int, vault_path: Path, key: bytes, secret: str, socket_path: Path,
            floors: tuple[Timing, Timing, Timing],
            pinned: tuple[Timing, Timing, Timing] | None = None) -> list[Row]:
    floor, raw, interleaved = floors
    with Vault.open_with_key(vault_path, key) as v, AgentClient(socket_path) as client:
        nonce_in = timed("next_nonce", lambda: v.next_nonce(ENTRY), n)
        nonce_ag = timed("next_nonce", lambda: client.next_nonce(ENTRY), n)
        get_in = timed("credentials (get)", lambda: v.get(ENTRY), n)
        get_ag = timed("credentials (get)", lambda: client.credentials(ENTRY), n)
        status_ag = timed("status", client.status, n)
        counter = iter(range(10**15, 10**16))
        hmac_in = timed("sign AddOrder vs HMAC only", lambda: sign_spot(
            secret, PATH, next(counter), ORDER), n)
        sign_ag = timed("sign AddOrder", lambda: client.sign(ENTRY, PATH, ORDER), n)
        both_in = timed("sign AddOrder vs nonce + HMAC", lambda: sign_spot(
            secret, PATH, v.next_nonce(ENTRY), ORDER), n)
    compare(f"Agent round trip vs in-process call ({n:,} calls each)",
            [(nonce_in, nonce_ag), (get_in, get_ag), (hmac_in, sign_ag), (both_in, sign_ag)])
    print(f"\n  status round trip: p50 {status_ag.p50:.1f} µs, p99 {status_ag.p99:.1f} µs")
    print(f"  raw unix-socket echo to another process (the machine's floor): p50 "
          f"{floor.p50:.1f} µs, p99 {floor.p99:.1f} µs; the agent adds "
          f"{nonce_ag.p50 - floor.p50:.1f} µs to next_nonce at p50")
    procs = 4
    parallel = parallel_nonces(socket_path, procs, max(1000, n // 4))
    print(f"  {procs} client processes at once: {parallel:,.0f} nonces/s in total "
          f"(one key, one agent, {os.cpu_count()} CPUs)")
    return [
        Row("next_nonce p50 (agent)", f"{nonce_ag.p50:.1f} µs", "<= 100 µs", nonce_ag.p50 <= 100),
        Row("next_nonce p99 (agent)", f"{nonce_ag.p99:.1f} µs", "<= 1 ms", nonce_ag.p99 <= 1000),
        Row("nonces/s, one client", f"{nonce_ag.per_second:,.0f}", ">= 10,000",
            nonce_ag.per_second >= 10_000),
        Row("credentials p50 (agent)", f"{get_ag.p50:.1f} µs", "<= 100 µs", get_ag.p50 <= 100),
        Row("credentials p99 (agent)", f"{get_ag.p99:.1f} µs", "<= 1 ms", get_ag.p99 <= 1000),
        Row("signed requests/s, one client", f"{sign_ag.per_second:,.0f}", ">= 5,000",
            sign_ag.per_second >= 5_000),
        Row("sign p99 (agent)", f"{sign_ag.p99:.1f} µs", "<= 1 ms", sign_ag.p99 <= 1000),
        Row("sign p50 agent / in-proc nonce+HMAC", f"{sign_ag.p50 / both_in.p50:.1f}x", "",
            None),
        Row(f"nonces/s, {procs} processes", f"{parallel:,.0f}", "", None),
        Row("raw unix-socket echo p50 (machine floor)", f"{floor.p50:.1f} µs", "", None),
        Row("next_nonce p50 above the floor", f"{nonce_ag.p50 - floor.p50:.1f} µs", "", None),
        Row("next_nonce / raw echo of its frame (p50, interleaved)",
            f"{interleaved.p50 / floor.p50:.2f}x ({interleaved.p50:.1f} / {floor.p50:.1f} µs)",
            "<= 2x", interleaved.p50 / floor.p50 <= 2),
        Row("the frame raw to the agent / raw echo (p50, interleaved)",
            f"{raw.p50 / floor.p50:.2f}x ({raw.p50:.1f} µs)", "", None),
        *_pinned_rows(pinned),
    ]


def _pinned_rows(pinned: tuple[Timing, Timing, Timing] | None) -> list[Row]:
    if pinned is None:
        return []
    echo, raw, client = pinned
    return [
        Row("next_nonce / raw echo, all on one CPU (p50, interleaved)",
            f"{client.p50 / echo.p50:.2f}x ({client.p50:.1f} / {echo.p50:.1f} µs)", "<= 2x",
            client.p50 / echo.p50 <= 2),
        Row("the frame raw to the agent / raw echo, all on one CPU",
            f"{raw.p50 / echo.p50:.2f}x ({raw.p50:.1f} µs)", "", None),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 calls per measure")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    n = 1_000 if args.quick else 10_000
    rows = run(n)
    print(f"\n{SUMMARY_HEADER}\n")
    print(f"Command: `{shlex.join(['python', 'bench/bench_agent.py', *sys.argv[1:]])}`  ")
    print(f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
          f"{platform.python_version()}\n")
    print_table("Targets", ("measure", "figure", "target", "met"),
                [(r.measure, r.figure, r.target, r.verdict) for r in rows])
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

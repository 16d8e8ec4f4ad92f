"""The gateway against the floor of its own design, side by side in one run.

    python -m bench.bench_floor            # 5 blocks x 2,000 requests per target
    python -m bench.bench_floor --quick    # 2 blocks x 200 (the smoke run)

One run starts a scratch vault, its real agent, an upstream with the strict stand-in's checks
that answers at once (`bench.fast_upstream`, a process of its own), `botvault gateway` and
the floor prototype (`bench.floor_gateway`: the same hops with nothing around them), each as
a real process on loopback. Then, in blocks whose order is shuffled each time, one bot
sends N grant-signed Spot AddOrders one after the other through each, and the same request
straight to the upstream (signed with the real key) as the baseline. Printed: p50 and p99
of each, what the gateway and the floor add to the direct request, the ratio of the two,
and CPU per request of the gateway's and the floor's processes and of the agent
(/proc/PID/stat, read around each block). Also in the shuffled blocks: an audit line's worth
of bytes appended and fdatasync'ed in this process, the disk's part of the durable `sent`
line both carry (issue 17), and a message passed around a ring of as many processes as the
floor's request crosses (`bench.process_ring`), the machine's own floor for such a chain's
p99. Targets (issue 22): added p50 <= 1.3x the floor's, p99 added
<= 2 ms; CPU per request against the gateway as issue 22 found it: `--compare-env
PYTHON=path` runs that version beside this one.
Nothing fails on time; the script exits 1 only when a request was refused.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import platform
import random
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.process_ring import Ring
from botvault import Vault
from botvault.exchanges.kraken import sign_spot
from botvault.grant_ops import add_grant
from tests.agent_support import make_vault, running
from tests.gateway_stack import Credential, real_api_key, stop_gateway

SUMMARY_HEADER = "## botvault gateway floor benchmark summary"
PATH = "/0/private/AddOrder"
ORDER = "pair=XBTUSD&type=buy&ordertype=limit&price=27500.5&volume=0.01"
SPOT = {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}
TARGETS = ("direct", "gateway", "floor")
COMPARED = "gateway-b"  # --compare-env: a second gateway, started with one more variable
_TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


class Sender:
    """One bot on a kept-alive connection; each request signed with a fresh nonce."""

    _nonce = time.time_ns() // 1000

    def __init__(self, url: str, cred: Credential) -> None:
        self.conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=60)
        self.cred = cred

    def send(self) -> None:
        # Fresh and increasing: the agent's replay window takes only nonces near the clock.
        Sender._nonce = max(Sender._nonce + 1, time.time_ns() // 1000)
        body = f"nonce={Sender._nonce}&{ORDER}"
        self.conn.request("POST", PATH, body, {
            "API-Key": self.cred.api_key,
            "API-Sign": sign_spot(self.cred.api_secret, PATH, Sender._nonce, body),
            "Content-Type": "application/x-www-form-urlencoded"})
        doc = json.loads(self.conn.getresponse().read())
        if doc.get("error"):
            raise RuntimeError(f"refused: {doc['error']}")


class DurableLine:
    """The machine's floor for issue 17's durable `sent` line: a line of an audit line's
    size appended to a file beside the bench's vault and fdatasync'ed, in-process."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.line = b"x" * 199 + b"\n"

    def send(self) -> None:
        os.write(self.fd, self.line)
        os.fdatasync(self.fd)


def cpu_us(pid: int) -> float:
    """User + system CPU of `pid` so far, in microseconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_US


@dataclass
class Series:
    samples: list[float] = field(default_factory=list)  # microseconds
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU us in total
    block_p50: list[float] = field(default_factory=list)  # each block's median

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _process(argv: list[str], stdin: str = "") -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"{argv[2]} did not start: {line!r}")
    return proc, line.strip().rsplit(" ", 1)[-1]


def _start_with(variable: str, vault: Path, url: str) -> tuple[subprocess.Popen[str], str]:
    """A second gateway: `PYTHON=path` runs it with another interpreter (one whose
    botvault is another version of the code, say a checkout of an earlier commit: started
    from / so that the current directory's package is not the one imported); anything else
    is an environment variable set for it."""
    name, _, value = variable.partition("=")
    if name == "PYTHON":
        return _launch(value, vault, url)
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        return _launch(sys.executable, vault, url)
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _launch(python: str, vault: Path, url: str) -> tuple[subprocess.Popen[str], str]:
    """A gateway, every one the same way (from /, so that the current directory's package is
    not the one imported): launched differently, two gateways of one code measured 4-6%
    apart in CPU per request in the same run."""
    proc = subprocess.Popen(
        [python, "-m", "botvault", "gateway", "--vault", str(vault), "--listen",
         "127.0.0.1:0", "--spot-url", url, "--futures-url", url], cwd="/",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if "listening on " not in line:
        proc.kill()
        raise RuntimeError(f"a gateway did not start: {line!r}")
    return proc, line.strip().rsplit(" ", 1)[1]


@contextmanager
def stack(root: Path, compare_env: str | None = None
          ) -> Iterator[tuple[dict[str, Sender], dict[str, int]]]:
    os.environ["XDG_RUNTIME_DIR"] = str(root / "run")
    (root / "run").mkdir(mode=0o700)
    names = (*TARGETS, COMPARED)
    keys = make_vault(root / "vault.bv", dict.fromkeys(names, SPOT))
    upstream_keys = {real_api_key(n): {"secret": keys.secrets[n], "product": "spot"}
                     for n in names}
    with running(keys, ttl=3600, idle=3600) as agent:
        upstream, url = _process([sys.executable, "-m", "bench.fast_upstream"],
                                 json.dumps(upstream_keys) + "\n")
        gateway, gateway_url = _launch(sys.executable, keys.path, url)
        floor, floor_url = _process([sys.executable, "-m", "bench.floor_gateway",
                                     str(keys.path), url])
        other = _start_with(compare_env, keys.path, url) if compare_env else None
        try:
            with Vault.open_with_key(keys.path, keys.data_key) as vault:
                grants = {n: add_grant(vault, f"{n}-bot", entry=n, general="full",
                                       withdrawal="none") for n in ("gateway", "floor", COMPARED)}
            creds = {n: Credential(g.api_key, g.api_secret.reveal()) for n, g in grants.items()}
            senders = {"direct": Sender(url, Credential(real_api_key("direct"),
                                                        keys.secrets["direct"])),
                       "gateway": Sender(gateway_url, creds["gateway"]),
                       "floor": Sender(floor_url, creds["floor"])}
            pids = {"gateway": gateway.pid, "floor": floor.pid, "agent": agent.pid,
                    "upstream": upstream.pid}
            if other is not None:
                senders[COMPARED] = Sender(other[1], creds[COMPARED])
                pids[COMPARED] = other[0].pid
            yield senders, pids
            outcomes = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
            outcomes.request("GET", "/__outcomes")
            counts = json.loads(outcomes.getresponse().read())
            if set(counts) != {"ok"}:
                raise RuntimeError(f"the upstream refused requests: {counts}")
        finally:
            stop_gateway(gateway)
            if other is not None:
                stop_gateway(other[0])
            for proc in (floor, upstream):
                proc.terminate()
                proc.wait(10)


def run(blocks: int, count: int, seed: int | None, compare_env: str | None = None
        ) -> dict[str, Series]:
    extra = ("disk", "ring")
    targets = (*TARGETS, *extra, COMPARED) if compare_env else (*TARGETS, *extra)
    series = {t: Series() for t in targets}
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp, \
            stack(Path(tmp), compare_env) as (senders, pids):
        disk = DurableLine(Path(tmp) / "durable-line.bin")
        # The sender and 4 others: the floor's request crosses the floor, the agent, the
        # audit child and the upstream.
        ring = Ring(4)
        sends = {**{t: s.send for t, s in senders.items()}, "disk": disk.send,
                 "ring": ring.send}
        for target in targets:  # warm up: connections, caches, the audit child
            for _ in range(max(50, count // 10)):
                sends[target]()
        for _ in range(blocks):
            order = list(targets)
            rng.shuffle(order)
            for target in order:
                # The others' blocks can outlast a server's keep-alive (the gateway's idle
                # timeout is 15 s), and http.client does not notice a dropped connection
                # before it writes: a fresh one per block, opened by an untimed request.
                if target in senders:
                    senders[target].conn.close()
                send, samples, clock = sends[target], series[target].samples, \
                    time.perf_counter_ns
                send()
                before = {name: cpu_us(pid) for name, pid in pids.items()}
                gc.collect()
                gc.disable()
                try:
                    for _ in range(count):
                        start = clock()
                        send()
                        samples.append((clock() - start) / 1000)
                finally:
                    gc.enable()
                series[target].block_p50.append(statistics.median(samples[-count:]))
                for name, pid in pids.items():
                    series[target].cpu[name] = series[target].cpu.get(name, 0.0) + \
                        cpu_us(pid) - before[name]
        os.close(disk.fd)
        ring.close()
    return series


def report(series: dict[str, Series], blocks: int, count: int, command: str,
           compare_env: str | None = None) -> list[str]:
    direct = series["direct"]
    d50, d99 = statistics.median(direct.samples), direct.pct(0.99)
    shown = [t for t in ("gateway", "floor", COMPARED) if t in series]
    added = {t: (statistics.median(series[t].samples) - d50, series[t].pct(0.99) - d99)
             for t in shown}
    n = blocks * count
    cpu = {t: series[t].cpu.get(t, 0.0) / n for t in shown}
    agent = {t: series[t].cpu.get("agent", 0.0) / n for t in shown}
    ratio = added["gateway"][0] / added["floor"][0]
    out = [SUMMARY_HEADER, "",
           f"Command: `{command}`; python {platform.python_version()}, {os.cpu_count()} CPUs, "
           f"load average {os.getloadavg()[0]:.1f}; {blocks} shuffled blocks x {count} "
           "sequential Spot AddOrders per target", "",
           "| target | p50 us | p99 us | added p50 us | added p99 us | process CPU us/req "
           "| agent CPU us/req |", "|---|---|---|---|---|---|---|",
           f"| direct to the upstream | {d50:,.0f} | {d99:,.0f} | | | | |"]
    for t in shown:
        s = series[t]
        label = f"gateway with {compare_env}" if t == COMPARED else t
        out.append(f"| {label} | {statistics.median(s.samples):,.0f} | {s.pct(0.99):,.0f} | "
                   f"{added[t][0]:,.0f} | {added[t][1]:,.0f} | {cpu[t]:,.0f} | "
                   f"{agent[t]:,.0f} |")
    disk = series["disk"]
    out.append(f"| an audit-sized line appended and fdatasync'ed (in-process, the disk's "
               f"part of the durable `sent` line) | {statistics.median(disk.samples):,.0f} | "
               f"{disk.pct(0.99):,.0f} | | | | |")
    ring = series["ring"]
    out.append(f"| a message around a ring of 5 processes (this one and 4 others, ~40 us of "
               f"Python work at each), as many as the floor's request crosses | "
               f"{statistics.median(ring.samples):,.0f} | {ring.pct(0.99):,.0f} | | | | |")
    per_block = sorted((g - d) / (f - d) for g, f, d in zip(
        series["gateway"].block_p50, series["floor"].block_p50, direct.block_p50, strict=True))
    out += ["",
            f"- per block, gateway added / floor added: {', '.join(f'{r:.2f}' for r in per_block)}"
            f" (median {statistics.median(per_block):.2f}x)",
            f"- gateway added p50 / floor added p50: {ratio:.2f}x (target <= 1.3x: "
            f"{'met' if ratio <= 1.3 else 'NOT met'})",
            f"- gateway added p99: {added['gateway'][1]:,.0f} us (target <= 2,000 us: "
            f"{'met' if added['gateway'][1] <= 2000 else 'NOT met'}); the floor's own "
            f"{added['floor'][1]:,.0f} us, so the gateway's part beyond its design's floor "
            f"is {added['gateway'][1] - added['floor'][1]:,.0f} us",
            f"- gateway CPU per request / floor's: {cpu['gateway'] / max(cpu['floor'], 1):.2f}x "
            "(target: half of today's figure in bench/README.md)"]
    if COMPARED in series:
        out.append(f"- gateway with {compare_env} / gateway: added p50 "
                   f"{added[COMPARED][0] / added['gateway'][0]:.2f}x, CPU per request "
                   f"{cpu[COMPARED] / max(cpu['gateway'], 1):.2f}x")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 blocks x 200 (smoke run)")
    parser.add_argument("--blocks", type=int, default=None)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--compare-env", metavar="VAR=VALUE", default=None,
                        help="also run a second gateway with this environment variable set "
                             "(PYTHON=path: with that interpreter, e.g. an earlier version)")
    args = parser.parse_args(argv)
    blocks = args.blocks or (2 if args.quick else 5)
    count = args.count or (200 if args.quick else 2000)
    series = run(blocks, count, args.seed, args.compare_env)
    command = "python -m bench.bench_floor" + " ".join(["", *(argv or sys.argv[1:])])
    print("\n".join(report(series, blocks, count, command.rstrip(), args.compare_env)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

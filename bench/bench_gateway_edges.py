"""Benchmark of the gateway's and the agent's edges: oversized bodies, and a burst of clients.

Run from the repository root with the project's interpreter:

    python -m bench.bench_gateway_edges            # 5 s per measure
    python -m bench.bench_gateway_edges --quick    # 1.5 s

One run starts a scratch vault, its real agent, the strict Kraken stand-in (counters off) and
`botvault gateway` as a real process, then measures, in the same run:

- **refused means closed**: the requests per second of 4 ordinary bots (Spot AddOrder through
  the gateway, 4 grants on 4 keys) alone, then while 8 other senders post 10 MB bodies over
  and over (each announced by its Content-Length, so the gateway refuses it with 413 and
  closes the connection without reading it). Target: the ordinary bots keep >= 0.5x;
- **busy is not locked**: 200 clients (threads, one connection each) connect to the agent at
  once and ask its status; target 0 errors, and the time the burst took.

Nothing fails on wall-clock time: each target is printed with whether it was met; the script
exits 0 unless something broke.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from bench.bench_gateway import Sender
from bench.tables import bench_home, exchange_verdict, quick_parser
from tests.gateway_stack import Stack, gateway_stack

SUMMARY_HEADER = "## botvault gateway edges benchmark summary"
BOTS, FLOODERS, BODY, BURST = 4, 8, 10_000_000, 200


def ordinary_rate(senders: list[Sender], seconds: float) -> float:
    """Requests per second the senders complete together in `seconds`."""
    stop = time.monotonic() + seconds
    counts = [0] * len(senders)
    errors: list[BaseException] = []

    def bot(i: int) -> None:
        try:
            while time.monotonic() < stop:
                senders[i].send()
                counts[i] += 1
        except BaseException as exc:  # reported: the bench breaks loudly
            errors.append(exc)

    threads = [threading.Thread(target=bot, args=(i,)) for i in range(len(senders))]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.monotonic() - start)


def flood(url: str, seconds: float) -> int:
    """Post 10 MB bodies for `seconds`: announce each, send as much as the gateway takes.
    Runs in its own process (`--flood`), so its copying never holds the ordinary bots' GIL."""
    host, port = urlsplit(url).netloc.split(":")
    head = (f"POST /0/private/AddOrder HTTP/1.1\r\nHost: {host}\r\nAPI-Key: x\r\n"
            f"API-Sign: y\r\nContent-Length: {BODY}\r\n\r\n").encode()
    body = memoryview(b"z" * BODY)
    stop, sent = time.monotonic() + seconds, 0
    while time.monotonic() < stop:
        try:
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(head)
                sock.sendall(body)
                sock.recv(4096)
        except OSError:
            pass  # refused and closed under it: what the gateway should do
        sent += 1
    return sent


def flooded_rate(stack: Stack, senders: list[list[Sender]], seconds: float
                 ) -> tuple[list[float], int]:
    procs = [subprocess.Popen([sys.executable, "-m", "bench.bench_gateway_edges", "--flood",
                               stack.url, str(seconds + 0.5)], stdout=subprocess.PIPE,
                              text=True) for _ in range(FLOODERS)]
    time.sleep(0.3)  # the flood under way
    try:
        rates = [ordinary_rate(group, seconds / len(senders)) for group in senders]
        return rates, sum(int(p.communicate(timeout=60)[0] or 0) for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def burst(vault_path: Path) -> tuple[int, float]:
    """(errors, seconds) of BURST clients connecting to the agent at once."""
    from botvault.agent import connect

    errors: list[BaseException] = []
    barrier = threading.Barrier(BURST + 1)

    def client() -> None:
        barrier.wait()
        try:
            with connect(vault_path) as agent:
                agent.status()
        except BaseException as exc:  # counted: the target is none
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(BURST)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.monotonic()
    for t in threads:
        t.join(120)
    return len(errors), time.monotonic() - start


def run(seconds: float, out: Callable[[str], None]) -> bool:
    with bench_home("bench-edges-") as root:
        spot = {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}
        entries = {f"{kind}{i}": spot for kind in ("key", "direct") for i in range(BOTS)}
        with gateway_stack(root / "vault.bv", entries=entries, enforce_rate=False) as stack:
            senders = [Sender(stack.url, stack.grant(f"bot{i}", f"key{i}"))
                       for i in range(BOTS)]
            # The same load straight to the stand-in: what the flood costs the machine.
            direct = [Sender(stack.kraken.url, stack.real(f"direct{i}")) for i in range(BOTS)]
            ordinary_rate(senders, 0.5)  # warm up
            alone = ordinary_rate(senders, seconds / 2)
            direct_alone = ordinary_rate(direct, seconds / 2)
            (flooded, direct_flooded), bodies = flooded_rate(stack, [senders, direct],
                                                             seconds)
            again = ordinary_rate(senders, seconds / 2)
            direct_again = ordinary_rate(direct, seconds / 2)
            for s in senders + direct:
                s.close()
            errors, took = burst(root / "vault.bv")
            rejected = stack.kraken.rejected()
    baseline = (alone + again) / 2  # before and after: a noisy machine moves both
    ratio = flooded / baseline
    direct_base = (direct_alone + direct_again) / 2
    direct_ratio = direct_flooded / direct_base
    out(SUMMARY_HEADER)
    out(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{seconds:g} s per measure; `python -m bench.bench_gateway_edges"
        f"{' --quick' if seconds < 5 else ''}`")
    out("")
    out(f"| {BOTS} ordinary bots (AddOrder) | through the gateway req/s | straight to the "
        "stand-in req/s |")
    out("|---|---|---|")
    out(f"| alone (mean of before and after) | {baseline:,.0f} | {direct_base:,.0f} |")
    out(f"| while {FLOODERS} senders post 10 MB bodies ({bodies} refused) "
        f"| {flooded:,.0f} | {direct_flooded:,.0f} |")
    out(f"| ratio | {ratio:.2f}x | {direct_ratio:.2f}x |")
    out("")
    out(f"target ratio >= 0.5 through the gateway: {'met' if ratio >= 0.5 else 'NOT met'}; "
        f"the gateway's ratio / the machine's: {ratio / direct_ratio:.2f} "
        "(the flooding processes compete for the same CPUs as every bot; a ratio near 1 "
        "means the gateway itself loses nothing to them)")
    out("")
    out(f"{BURST} clients connecting to the agent at once: {errors} errors in {took:.2f} s "
        f"(target 0 errors: {'met' if errors == 0 else 'NOT met'})")
    return exchange_verdict(out, rejected)


def main(argv: list[str] | None = None) -> int:
    parser = quick_parser(__doc__, "shorter measures (smoke test)")
    parser.add_argument("--flood", nargs=2, metavar=("URL", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flood:  # one flooding sender (a process of its own)
        print(flood(args.flood[0], float(args.flood[1])))
        return 0
    return 0 if run(1.5 if args.quick else 5.0, print) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: honest bots under floods (issue 17, must hold 5), and what the replay window
costs.

Run from the repository root with the project's interpreter:

    python -m bench.bench_floods            # 400 requests per measure
    python -m bench.bench_floods --quick    # 100

One run starts a scratch vault, its real agent, the strict Kraken stand-in (rate counters off)
and `botvault gateway` as a real process, with two Spot keys K and L and an honest bot on each
(a grant each). It measures, one request at a time, the honest bots' p50:

1. unflooded (the baseline);
2. under a flood of badly signed requests naming K's grant (its api key is in bot configs;
   its secret is not), from other processes on many connections: K's bot against L's
   (target: within 3x);
3. under an unauthenticated flood (made-up grant ids, unknown paths, no credentials): both
   bots against their unflooded p50 (target: within 3x).

And the replay window's own cost (agent.freshness): the p50 of accepting one request's digest,
and the memory it holds at 1,000 requests/s once the window is full.

Ratios only, all measured in this run; nothing fails on wall-clock time (exit 0 unless
something broke).
"""

from __future__ import annotations

import base64
import http.client
import multiprocessing
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from urllib.parse import urlsplit

from bench.bench_gateway import Sender, measure_latency
from bench.tables import bench_home, exchange_verdict, quick_args
from botvault.agent.freshness import DEFAULT_WINDOW, Freshness
from tests.gateway_stack import gateway_stack

FLOODERS = 4  # processes
CONNECTIONS = 8  # kept-alive connections per flooding process


def _flood(url: str, kind: str, grant_key: str, stop_at: float) -> None:
    """One flooding process: `kind` "forged" (K's grant, a wrong signature) or "anonymous"
    (made-up grant ids, unknown paths, no credentials), round robin on its connections."""
    netloc = urlsplit(url).netloc
    conns = [http.client.HTTPConnection(netloc, timeout=30) for _ in range(CONNECTIONS)]
    n = 0
    while time.monotonic() < stop_at:
        conn = conns[n % CONNECTIONS]
        n += 1
        body = f"nonce={time.time_ns() // 1000}"
        if kind == "forged":
            headers = {"API-Key": grant_key, "API-Sign": base64.b64encode(
                os.urandom(64)).decode(), "Content-Type": "application/x-www-form-urlencoded"}
            conn.request("POST", "/0/private/Balance", body, headers)
        elif n % 3 == 0:
            made_up = "bvg_" + base64.urlsafe_b64encode(os.urandom(39)).decode()
            conn.request("POST", "/0/private/Balance", body, {
                "API-Key": made_up, "API-Sign": "c2ln"})
        elif n % 3 == 1:
            conn.request("GET", "/x")
        else:
            conn.request("POST", "/0/private/Balance", body)
        try:
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conns[(n - 1) % CONNECTIONS] = http.client.HTTPConnection(netloc, timeout=30)


def _p50_us(sender: Sender, count: int) -> float:
    return measure_latency("", sender, count).p50


def _flooded(url: str, kind: str, grant_key: str, honest: list[Sender], count: int
             ) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    stop_at = time.monotonic() + 600
    procs = [ctx.Process(target=_flood, args=(url, kind, grant_key, stop_at))
             for _ in range(FLOODERS)]
    for p in procs:
        p.start()
    time.sleep(2.0)  # the flood under way
    try:
        return [_p50_us(s, count) for s in honest]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(10)


def replay_window_cost(rate: int = 1000, seconds: int = 30) -> tuple[float, float, int]:
    """(p50 us of one `admit`, MiB held, digests held) at `rate` requests/s for `seconds`
    (window DEFAULT_WINDOW: full after 2x the window)."""
    fresh = Freshness()
    samples: list[float] = []
    tracemalloc.start()
    base = 1_900_000_000.0
    for i in range(rate * seconds):
        now = base + i / rate
        signature = base64.b64encode(os.urandom(64)).decode()
        start = time.perf_counter_ns()
        fresh.admit("bvg_" + "A" * 52, signature, str(int(now * 1000)),
                    window=DEFAULT_WINDOW, now=now, required=True)
        samples.append((time.perf_counter_ns() - start) / 1000)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(samples), held / 2**20, len(fresh)


def run(count: int, out: Callable[[str], None]) -> bool:
    with bench_home("bench-floods-") as root:
        spot = {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}
        with gateway_stack(root / "vault.bv", entries={"k": spot, "l": spot},
                           enforce_rate=False) as stack:
            grant_k, grant_l = stack.grant("bot-k", "k"), stack.grant("bot-l", "l")
            honest = [Sender(stack.url, grant_k), Sender(stack.url, grant_l)]
            calm = [_p50_us(s, count) for s in honest]
            forged = _flooded(stack.url, "forged", grant_k.api_key, honest, count)
            anonymous = _flooded(stack.url, "anonymous", grant_k.api_key, honest, count)
            for s in honest:
                s.close()
            rejected = stack.kraken.rejected()
    admit_us, mib, held = replay_window_cost()
    k_vs_l = forged[0] / forged[1]
    anon = max(anonymous[0] / calm[0], anonymous[1] / calm[1])
    out("## botvault gateway under floods")
    out(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{count} requests per measure; {FLOODERS} flooding processes x {CONNECTIONS} "
        "connections")
    out("")
    out("| honest bot p50 (us) | on key K | on key L |")
    out("|---|---|---|")
    out(f"| unflooded | {calm[0]:,.0f} | {calm[1]:,.0f} |")
    out(f"| badly signed flood naming K's grant | {forged[0]:,.0f} | {forged[1]:,.0f} |")
    out(f"| unauthenticated flood | {anonymous[0]:,.0f} | {anonymous[1]:,.0f} |")
    out("")
    out(f"K's bot vs L's under the badly signed flood: {k_vs_l:.2f}x "
        f"(target <= 3x: {'met' if k_vs_l <= 3 else 'NOT met'})")
    out(f"unauthenticated flood vs unflooded (worse bot): {anon:.2f}x "
        f"(target <= 3x: {'met' if anon <= 3 else 'NOT met'})")
    out("")
    out(f"replay window ({DEFAULT_WINDOW:g} s): one request's check p50 {admit_us:.1f} us; "
        f"at 1,000 requests/s it holds {held:,} digests in {mib:.1f} MiB")
    return exchange_verdict(out, rejected)


def main(argv: list[str] | None = None) -> int:
    args = quick_args(__doc__, "fewer requests (smoke test)", argv)
    return 0 if run(100 if args.quick else 400, print) else 1


if __name__ == "__main__":
    sys.exit(main())

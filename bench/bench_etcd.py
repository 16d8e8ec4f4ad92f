"""Benchmark of sharing a key through etcd: what the etcd path adds to a request, and how many
requests per second one key takes with two gateways.

Run from the repository root with the project's interpreter (needs the `etcd` binary):

    python -m bench.bench_etcd            # 1,000 requests per latency measure
    python -m bench.bench_etcd --quick    # 200

One run starts everything on loopback (tests/etcd_sites.py): a 3-member etcd cluster, two
copies of one vault with their real agents, `botvault gateway --etcd` on each, the strict
Kraken stand-in, and a third gateway without etcd on the first copy (the local path).
Measured, alternating the two paths in rounds so that a noisy machine hits both alike:

- **added latency**: one Spot AddOrder at a time through the local gateway and through an
  etcd gateway; p50 and p99 of each, and what the etcd path adds;
- **requests per second** on one key: 4 bots on the local gateway, and 4 bots split across
  the two etcd gateways (2 each).

Nothing fails on wall-clock time; the script exits 0 unless a request was refused.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable

from bench.bench_gateway import Latency, Sender, measure_latency, measure_rate
from bench.tables import bench_home, exchange_verdict, quick_args
from tests.etcd_cluster import ETCD, ETCD_MISSING
from tests.etcd_sites import two_sites
from tests.gateway_stack import start_gateway, stop_gateway

SUMMARY_HEADER = "## botvault etcd benchmark summary"
ROUNDS = 5


def run(count: int, per_bot: int, out: Callable[[str], None]) -> bool:
    with bench_home("bench-etcd-") as root, two_sites(root, latency=0.0) as sites:
        local_proc, local_url = start_gateway(sites.keys[0].path, sites.kraken.url,
                                              "--tier", "pro")
        try:
            local_s = Sender(local_url, sites.grants[0])
            etcd_s = Sender(sites.urls[0], sites.grants[1])
            local_us: list[float] = []
            etcd_us: list[float] = []
            for _ in range(ROUNDS):
                local_us += measure_latency("local", local_s, count // ROUNDS).samples_us
                etcd_us += measure_latency("etcd", etcd_s, count // ROUNDS).samples_us
            local, through = Latency("local gateway", local_us), \
                    Latency("etcd gateway", etcd_us)
            local_s.close()
            etcd_s.close()
            local_rate = measure_rate([Sender(local_url, g) for g in sites.grants],
                                      per_bot)
            split = [Sender(sites.urls[i % 2], g) for i, g in enumerate(sites.grants)]
            etcd_rate = measure_rate(split, per_bot)
        finally:
            stop_gateway(local_proc)
            for stream in (local_proc.stdout, local_proc.stderr):
                if stream is not None:
                    stream.close()
        rejected = sites.kraken.rejected()
    out(SUMMARY_HEADER)
    out(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{count} requests per latency measure; 3-member etcd on loopback")
    out("")
    out("| request (Spot AddOrder, one at a time) | p50 us | p99 us |")
    out("|---|---|---|")
    for lat in (local, through):
        out(f"| {lat.label} | {lat.p50:,.0f} | {lat.pct(0.99):,.0f} |")
    out(f"| added by the etcd path | {through.p50 - local.p50:,.0f} | "
        f"{through.pct(0.99) - local.pct(0.99):,.0f} |")
    out(f"| ratio etcd / local | {through.p50 / local.p50:.2f}x | "
        f"{through.pct(0.99) / local.pct(0.99):.2f}x |")
    out("")
    out("| one key, 4 bots | req/s |")
    out("|---|---|")
    out(f"| one gateway, local | {local_rate:,.0f} |")
    out(f"| two gateways through etcd (2 bots each) | {etcd_rate:,.0f} |")
    out("")
    return exchange_verdict(out, rejected)


def main(argv: list[str] | None = None) -> int:
    args = quick_args(__doc__, "fewer requests (a smoke run)", argv)
    if ETCD is None:
        print(f"bench_etcd: {ETCD_MISSING}", file=sys.stderr)
        return 2
    count, per_bot = (200, 50) if args.quick else (1000, 250)
    return 0 if run(count, per_bot, print) else 1


if __name__ == "__main__":
    sys.exit(main())

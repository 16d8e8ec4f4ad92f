"""Benchmark of grant policies: what the trading policy costs a request at the gateway.

Run from the repository root with the project's interpreter:

    python -m bench.bench_policy            # 2,000 requests per grant
    python -m bench.bench_policy --quick    # 200

One run, one stack (a scratch vault, its real agent, the strict Kraken stand-in with its
rate counters off, `botvault gateway` as a real process), three grants on one key sending
the same Spot limit AddOrder one at a time: no policy; a policy (pairs with the public
AssetPairs aliases, order types, order volume and notional caps); the same policy with a
daily notional budget (one durable write per order). The grants take turns in rounds so
that drift on a shared machine hits all three alike. Printed: p50 and p99 of each and the
ratio of each p50 to the no-policy p50. Nothing fails on time; exit 0 unless a request was
refused.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from decimal import Decimal

from bench.bench_gateway import Latency, Sender
from bench.tables import bench_home, exchange_verdict, quick_args
from botvault import Vault
from botvault.grant_ops import add_grant
from botvault.trading_policy import Policy
from tests.gateway_stack import Credential, gateway_stack

SUMMARY_HEADER = "## botvault grant policy benchmark summary"
POLICY = Policy(pairs=("XBTUSD",), order_types=("limit",), max_order_volume=Decimal(1),
                max_order_notional=Decimal(1000))
BUDGET = Policy(**{**POLICY.__dict__, "max_daily_notional": Decimal(10) ** 12})
ROUNDS = 10


def run(count: int, out: Callable[[str], None] = print) -> bool:
    with bench_home("bench-policy-") as root:
        entries = {"key": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}}
        with gateway_stack(root / "vault.bv", entries=entries, enforce_rate=False) as stack:
            from botvault import agent

            # The stack's agent expires after a minute; a loaded machine can take longer.
            with agent.connect(stack.keys.path) as client:
                client.extend(ttl=3600, idle=3600)
            creds: dict[str, Credential] = {}
            with Vault.open_with_key(stack.keys.path, stack.keys.data_key) as vault:
                for label, policy in (("no policy", None), ("policy", POLICY),
                                      ("policy + daily budget", BUDGET)):
                    made = add_grant(vault, label.replace(" ", "-").replace("+", "and"),
                                     entry="key", general="full", withdrawal="none",
                                     policy=policy)
                    creds[label] = Credential(made.api_key, made.api_secret.reveal())
            senders = {label: Sender(stack.url, cred) for label, cred in creds.items()}
            samples: dict[str, list[float]] = {label: [] for label in senders}
            for sender in senders.values():  # warm up: connections, the AssetPairs cache
                for _ in range(max(20, count // 20)):
                    sender.send()
            for _ in range(ROUNDS):
                for label, sender in senders.items():
                    for _ in range(count // ROUNDS):
                        start = time.perf_counter_ns()
                        sender.send()
                        samples[label].append((time.perf_counter_ns() - start) / 1000)
            for sender in senders.values():
                sender.close()
            # The AssetPairs fetch (the pairs' aliases) is a public call, not a rejection.
            rejected = {k: v for k, v in stack.kraken.rejected().items() if k != "public"}
    lats = [Latency(label, s) for label, s in samples.items()]
    base = lats[0].p50
    say = out
    say(SUMMARY_HEADER)
    say(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{count} requests per grant, in {ROUNDS} interleaved rounds")
    say("")
    say("| grant (Spot limit AddOrder through the gateway) | p50 us | p99 us | p50 ratio |")
    say("|---|---|---|---|")
    for lat in lats:
        say(f"| {lat.label} | {lat.p50:,.0f} | {lat.pct(0.99):,.0f} | {lat.p50 / base:.2f}x |")
    say("")
    return exchange_verdict(say, rejected)


def main(argv: list[str] | None = None) -> int:
    args = quick_args(__doc__, "200 requests per grant", argv)
    return 0 if run(200 if args.quick else 2000) else 1


if __name__ == "__main__":
    sys.exit(main())

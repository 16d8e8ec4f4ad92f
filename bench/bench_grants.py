"""What a grant-authenticated signature costs in the agent, against signing by entry name.

Run from the repository root with the project's interpreter:

    python bench/bench_grants.py            # 5,000 calls per measure
    python bench/bench_grants.py --quick    # 500 calls per measure

A real agent (a process of its own, on its unix socket, as `botvault unlock` starts it) serves
a scratch vault of 10 and then 2,000 entries with one grant. Each measure times single round
trips (p50 / p99) of `grant_sign` (verify the bot's signature with the grant secret, check
grant and entry scopes, take the nonce, sign with the real key) and of `grant_resolve`,
against `sign` by entry name in the same run and agent. Ratios, not wall-clock targets,
because the machine is shared; the script exits 0 unless something broke.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from botvault import Vault, fileformat
from botvault.agent import AgentClient, start_agent
from botvault.crypto import FLOOR
from botvault.entries import Entry
from botvault.exchanges.kraken import sign_spot_text
from botvault.grant_ops import add_grant
from botvault.scopes import General, Withdrawal
from botvault.secret import Secret

PATH = "/0/private/AddOrder"
ORDER = "pair=XBTUSD&type=buy&ordertype=limit&price=27500.5&volume=0.01"


def _secret() -> Secret:
    return Secret(base64.b64encode(os.urandom(64)).decode())


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Microseconds of each of n calls, after a short warm-up."""
    for _ in range(min(20, n)):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def measure(workdir: Path, entries: int, n: int) -> list[list[str]]:
    path = workdir / f"v{entries}.bv"
    vault = Vault.create(path, "a bench passphrase of some length", kdf=FLOOR)

    def fill(records: dict[str, Any]) -> dict[str, Any]:
        for i in range(entries):
            records[f"e{i}"] = Entry(name=f"e{i}", exchange="kraken-spot",
                                     api_key=f"PUB{i:053d}", api_secret=_secret(),
                                     general=General.FULL, withdrawal=Withdrawal.NONE,
                                     entry_id=os.urandom(fileformat.ID_SIZE))
        return records

    vault.update_records(fill)
    grant = add_grant(vault, "bench-bot", entry="e0", general="full", withdrawal="none")

    def signed(count: int) -> Iterator[tuple[str, str]]:
        """`count` bodies a bot signed with the grant just now: the agent accepts each once,
        and only with a nonce near the clock (agent.freshness), so they are made (outside the
        timing) just before the block that sends them."""
        first = time.time_ns() // 10  # 10 ns ticks, as python-kraken-sdk counts
        bodies = [f"nonce={first + i}&{ORDER}" for i in range(count)]
        return iter([(b, sign_spot_text(grant.api_secret, PATH, b[6:b.index("&")], b))
                     for b in bodies])

    pending = signed(0)
    info = start_agent(path, bytes(vault._data_key), ttl=600, idle=600,
                       allow_withdrawal=False, socket_path=workdir / f"s{entries}.sock")
    try:
        with AgentClient(info.socket_path) as client:
            target = client.grant_resolve(grant.api_key)
            calls: dict[str, Callable[[], object]] = {
                "sign": lambda: client.sign("e0", PATH, ORDER),
                "grant_sign": lambda: client.grant_sign(
                    grant.api_key, path=PATH, method="POST", body=(req := next(pending))[0],
                    signature=req[1], nonce_header="", content_type="form",
                    key_id=target.key_id),
                "grant_resolve": lambda: client.grant_resolve(grant.api_key),
            }
            # Blocks of each take turns, so load that comes and goes weighs on all alike.
            samples: dict[str, list[float]] = {label: [] for label in calls}
            block = max(50, n // 10)
            for _ in range(max(1, n // block)):
                for label, fn in calls.items():
                    pending = signed(block + 20) if label == "grant_sign" else pending
                    samples[label] += timed(fn, block)
            base = statistics.median(samples["sign"])
            rows = []
            for label in ("grant_sign", "grant_resolve"):
                ordered = sorted(samples[label])
                p50, p99 = statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]
                verdict = "<= 2x: " + ("met" if p50 / base <= 2 else "NOT met") \
                    if label == "grant_sign" else ""
                rows.append([f"{entries:,}", label, f"{p50:.0f}", f"{p99:.0f}",
                             f"{base:.0f}", f"{p50 / base:.2f}x", verdict])
            return rows
    finally:
        os.kill(info.pid, 15)
        vault.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 500 if args.quick else 5000
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o700)
        rows = [row for entries in (10, 2000) for row in measure(workdir, entries, n)]
    headers = ["entries", "op", "p50 us", "p99 us", "sign p50 us", "p50 / sign", "target"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("## botvault grant benchmark summary")
    print(f"command: python bench/bench_grants.py{' --quick' if args.quick else ''}")
    for row in (headers, *rows):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the gateway: what it adds to a request, and how many go through per second.

Run from the repository root with the project's interpreter:

    python -m bench.bench_gateway            # 2,000 requests per latency measure
    python -m bench.bench_gateway --quick    # 200

One run starts everything on loopback: a scratch vault and its real agent, grants, the strict
Kraken stand-in (tests/kraken_server.py, rate counters off so that only the gateway paces) and
`botvault gateway` as a real process. Measured:

- **added latency**: the same private request (Spot AddOrder, outside the rate counter) sent
  one at a time straight to the stand-in, signed in this process with the real key, and
  through the gateway with a grant; p50 and p99 of each and their difference (targets: p50
  added <= 1 ms, p99 added <= 5 ms);
- **requests per second** through one key (4 bots on it), through 4 keys (one bot each), and
  16 bots on 4 keys, next to the same bots sent straight to the stand-in.

Nothing fails on wall-clock time: each target is printed with whether it was met; the script
exits 0 unless something broke (every request must be accepted).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from botvault.exchanges.kraken import sign_spot
from tests.gateway_stack import Credential, Stack, gateway_stack

SUMMARY_HEADER = "## botvault gateway benchmark summary"
PATH = "/0/private/AddOrder"
ORDER = "pair=XBTUSD&type=buy&ordertype=limit&price=27500.5&volume=0.01"
KEYS = 4


class Sender:
    """One bot: a kept-alive connection, signing each request with its credential."""

    _nonce = time.time_ns() // 1000
    _nonce_lock = threading.Lock()

    def __init__(self, url: str, cred: Credential) -> None:
        self.conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=60)
        self.cred = cred

    @classmethod
    def next_nonce(cls) -> int:
        # Direct senders share one increasing source, as one careful bot on a key would;
        # through the gateway the bot's nonce must be recent (the replay window): the clock.
        with cls._nonce_lock:
            cls._nonce = max(cls._nonce + 1, time.time_ns() // 1000)
            return cls._nonce

    def send(self) -> None:
        nonce = self.next_nonce()
        body = f"nonce={nonce}&{ORDER}"
        self.conn.request("POST", PATH, body, {
            "API-Key": self.cred.api_key,
            "API-Sign": sign_spot(self.cred.api_secret, PATH, nonce, body),
            "Content-Type": "application/x-www-form-urlencoded"})
        doc = json.loads(self.conn.getresponse().read())
        if doc.get("error"):
            raise RuntimeError(f"refused: {doc['error']}")

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True)
class Latency:
    label: str
    samples_us: list[float]

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples_us)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_us)


def measure_latency(label: str, sender: Sender, count: int) -> Latency:
    for _ in range(max(20, count // 20)):  # warm up: connections, caches
        sender.send()
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        sender.send()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return Latency(label, samples)


def measure_rate(senders: list[Sender], per_bot: int) -> float:
    """Requests per second with every sender sending `per_bot` requests at once."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(senders) + 1)

    def bot(sender: Sender) -> None:
        barrier.wait()
        try:
            for _ in range(per_bot):
                sender.send()
        except BaseException as exc:  # reported below: the bench breaks loudly
            errors.append(exc)

    threads = [threading.Thread(target=bot, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return len(senders) * per_bot / elapsed


@dataclass
class Setup:
    stack: Stack
    grants: dict[str, list[Credential]]  # entry -> grants (one per bot)


def _setups(root: Path) -> Iterator[Setup]:
    os.environ["XDG_RUNTIME_DIR"] = str(root / "run")
    (root / "run").mkdir(mode=0o700)
    # key<i> are used through the gateway, direct<i> straight: their nonces never mix.
    spot = {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}
    entries = {f"{kind}{i}": spot for kind in ("key", "direct") for i in range(KEYS)}
    with gateway_stack(root / "vault.bv", entries=entries, enforce_rate=False) as stack:
        grants = {f"key{i}": [stack.grant(f"key{i}-bot{j}", f"key{i}") for j in range(4)]
                  for i in range(KEYS)}
        yield Setup(stack, grants)


def _row(label: str, direct: float, through: float) -> str:
    return f"| {label} | {direct:,.0f} | {through:,.0f} | {through / direct:.2f}x |"


def run(count: int, per_bot: int, out: Callable[[str], None]) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        for setup in _setups(Path(tmp)):
            stack = setup.stack
            direct_sender = Sender(stack.kraken.url, stack.real("direct0"))
            gateway_sender = Sender(stack.url, setup.grants["key0"][0])
            direct = measure_latency("direct", direct_sender, count)
            through = measure_latency("gateway", gateway_sender, count)
            direct_sender.close()
            gateway_sender.close()
            added50, added99 = through.p50 - direct.p50, through.pct(0.99) - direct.pct(0.99)

            rates = []
            for label, bots_per_key, keys in (("4 bots on 1 key", 4, 1),
                                              ("4 bots on 4 keys", 1, 4),
                                              ("16 bots on 4 keys", 4, 4)):
                # Direct bots on one key share one nonce source and no lock, so they may
                # still collide; they send one at a time per key to stay comparable.
                d = [Sender(stack.kraken.url, stack.real(f"direct{i}")) for i in range(keys)]
                g = [Sender(stack.url, setup.grants[f"key{i}"][j])
                     for i in range(keys) for j in range(bots_per_key)]
                rates.append((label, measure_rate(d, per_bot * bots_per_key),
                              measure_rate(g, per_bot)))
                for s in d + g:
                    s.close()
            rejected = stack.kraken.rejected()
        ok = not rejected
        out(SUMMARY_HEADER)
        out(f"python {platform.python_version()} on {platform.machine()}, "
            f"{os.cpu_count()} CPUs; {count} requests per latency measure")
        out("")
        out("| request (Spot AddOrder) | p50 us | p99 us |")
        out("|---|---|---|")
        for lat in (direct, through):
            out(f"| {lat.label} | {lat.p50:,.0f} | {lat.pct(0.99):,.0f} |")
        out(f"| added by the gateway | {added50:,.0f} | {added99:,.0f} |")
        out("")
        out(f"target p50 added <= 1000 us: {'met' if added50 <= 1000 else 'NOT met'}; "
            f"p99 added <= 5000 us: {'met' if added99 <= 5000 else 'NOT met'}")
        out("")
        out("| load | direct req/s (1 sender per key) | through the gateway req/s | ratio |")
        out("|---|---|---|---|")
        for label, d_rate, g_rate in rates:
            out(_row(label, d_rate, g_rate))
        out("")
        out(f"rejections at the exchange: {rejected or 'none'}")
        return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke test)")
    args = parser.parse_args(argv)
    count, per_bot = (200, 25) if args.quick else (2000, 150)
    return 0 if run(count, per_bot, print) else 1


if __name__ == "__main__":
    sys.exit(main())

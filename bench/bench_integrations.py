"""Bots sharing one Kraken key: accepted requests per integration, against each client's default.

For each documented integration (ccxt kraken / krakenfutures, sync and ccxt.async_support;
python-kraken-sdk Spot and Futures, sync and async; krakenex), 4 processes x 150 private
requests on one key hit a strict local Kraken stand-in (tests/kraken_server.py: signatures
checked, nonces strictly increasing per key with no window). Each integration runs twice in the
same run: as the client's own documentation shows it (its secret, its own clock nonces), and
through botvault (`integrations.agent_signed`: the agent signs, the integration holds the key's
request order). ccxt.kraken and the SDK also run with the vault's counter alone
(the vault's `nonce` in ccxt's config, the SDK's `with_vault_nonces` recipe): increasing
nonces without the order, to show that a counter alone does not help. The figure is how
many of the 600 the exchange accepted; "max in flight" is the most of that key's requests
the exchange saw at once. Async modes run 5 tasks per process.
Nothing fails the run: the target (600/600 through botvault) is shown as met / NOT met.

    python bench/bench_integrations.py [--quick] [--latency SECONDS]
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bots and the stand-in live in tests/ (not installed)

from botvault import Vault  # noqa: E402 - after the path set-up above
from botvault.agent import AgentClient, start_agent  # noqa: E402 - same
from botvault.crypto import FLOOR  # noqa: E402 - same
from tests.integration_bots import COUNTER_KINDS, ENTRY_OF, run_bots  # noqa: E402 - same
from tests.kraken_server import StrictKraken  # noqa: E402 - same

SUMMARY_HEADER = "## botvault integrations benchmark summary"
PUB = {"spot": "BENCHSPOTKEY", "fut": "BENCHFUTKEY"}


_LABELS = {"default": "client default", "counter": "vault counter, no order",
           "agent": "botvault"}


def make_vault(path: Path) -> tuple[bytes, dict[str, str]]:
    secrets = {name: base64.b64encode(os.urandom(64)).decode() for name in PUB}
    with Vault.create(path, "bench passphrase", kdf=FLOOR) as v:
        v.add("spot", exchange="kraken-spot", api_key=PUB["spot"], api_secret=secrets["spot"],
              general="full", withdrawal="none")
        v.add("fut", exchange="kraken-futures", api_key=PUB["fut"], api_secret=secrets["fut"],
              general="full", withdrawal="none")
        return bytes(v._data_key), secrets


def one(mode: str, kind: str, secrets: dict[str, str], processes: int, count: int,
        latency: float) -> tuple[str, ...]:
    entry = ENTRY_OF[kind]
    with StrictKraken(latency=latency, enforce_rate=False) as server:
        server.add_key(PUB["spot"], secrets["spot"], "spot")
        server.add_key(PUB["fut"], secrets["fut"], "futures")
        started = time.perf_counter()
        run_bots(f"{mode}-{kind}", server.url, processes=processes, count=count,
                 key=PUB[entry], secret=secrets[entry] if mode == "default" else "")
        wall = time.perf_counter() - started
        total = processes * count
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(server.rejected().items()))
        met = "—" if mode != "agent" else (
            "met" if server.accepted() == total else "NOT met")
        return (kind, _LABELS[mode],
                f"{server.accepted()}/{total}", rejected or "none",
                str(server.max_in_flight(PUB[entry])), f"{total / wall:,.0f}", met)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 processes x 20 requests")
    parser.add_argument("--latency", type=float, default=0.001,
                        help="seconds the stand-in holds each private answer (default 0.001)")
    parser.add_argument("--only", default="", help="comma-separated integrations (default all)")
    args = parser.parse_args(argv)
    kinds = [k for k in ENTRY_OF if not args.only or k in args.only.split(",")]
    processes, count = (2, 20) if args.quick else (4, 150)
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="bv-bench-int-") as tmp:
        workdir = Path(tmp)
        runtime = workdir / "run"
        os.mkdir(runtime, 0o700)
        vault_path = workdir / "store" / "vault.bv"
        # The bots find the agent the way a bot does: from $BOTVAULT_PATH.
        os.environ["BOTVAULT_PATH"], os.environ["XDG_RUNTIME_DIR"] = str(vault_path), str(runtime)
        os.environ.pop("BOTVAULT_AGENT_SOCKET", None)
        # The stand-in's counters are off here: this measures the order, not the pacing.
        os.environ["BOTVAULT_KRAKEN_TIER"] = "off"
        key, secrets = make_vault(vault_path)
        info = start_agent(vault_path, key, ttl=3600, idle=3600, allow_withdrawal=False)
        try:
            for kind in kinds:
                modes = ("default", "counter", "agent") if kind in COUNTER_KINDS else (
                    "default", "agent")
                for mode in modes:
                    rows.append(one(mode, kind, secrets, processes, count, args.latency))
                    print("  ".join(rows[-1]), flush=True)
        finally:
            with AgentClient(info.socket_path) as client:
                client.lock()
            if info.process is not None:
                info.process.wait(10)
    print(f"\n{SUMMARY_HEADER}\n")
    print(f"Command: `{shlex.join(['python', 'bench/bench_integrations.py', *sys.argv[1:]])}`  ")
    print(f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
          f"{platform.python_version()}; {processes} processes x {count} requests on one key, "
          f"stand-in latency {args.latency * 1000:g} ms\n")
    header = ("integration", "nonces / order", "accepted", "rejected", "max in flight",
              "requests/s (with start-up)", f"target {processes * count}/{processes * count}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

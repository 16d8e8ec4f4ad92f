"""Two "machines" sharing one Kraken key through etcd, for tests and the bench: a 3-member
etcd cluster, two copies of one vault each with its own real agent and `botvault gateway
--etcd`, the strict stand-in as the exchange (recording every nonce it accepted), and bot
processes with real clients split across the two gateways."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from botvault import Vault
from botvault.grant_ops import add_grant

from .agent_support import Keys, make_vault, running
from .etcd_cluster import EtcdCluster, etcd_cluster
from .gateway_stack import Credential, real_api_key, start_gateway, stop_gateway, tally_bots
from .kraken_server import StrictKraken

ROOT = Path(__file__).resolve().parent.parent
SPOT = {"spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}}


@dataclass
class RecordingKraken(StrictKraken):
    """The strict stand-in, keeping every Spot nonce it accepted in the order it did."""

    nonces: list[int] = field(default_factory=list)

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes
               ) -> Any:
        result = super().answer(method, target, headers, body)
        if getattr(result, "outcome", "") == "ok" and target.startswith("/0/private/"):
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
            with self.lock:
                self.nonces.append(int(fields["nonce"]))
        return result


@dataclass
class Sites:
    cluster: EtcdCluster
    kraken: RecordingKraken
    keys: list[Keys]
    gateways: list[subprocess.Popen[str]]
    urls: list[str]
    grants: list[Credential]


def _site(tmp: Path, name: str) -> Path:
    directory = tmp / name
    directory.mkdir(mode=0o700)
    return directory / "v.bv"


@contextlib.contextmanager
def two_sites(tmp: Path, *, bots: int = 4, latency: float = 0.002, lease_ttl: int = 2,
              gateway_args: tuple[str, ...] = ()) -> Iterator[Sites]:
    keys_a = make_vault(_site(tmp, "site-a"), SPOT)
    with Vault.open_with_key(keys_a.path, keys_a.data_key) as vault:
        grants = [add_grant(vault, f"bot{i}", entry="spot", general="full",
                            withdrawal="none") for i in range(bots)]
    creds = [Credential(g.api_key, g.api_secret.reveal()) for g in grants]
    path_b = _site(tmp, "site-b")
    shutil.copy2(keys_a.path, path_b)  # the vault file only: nonce state is each machine's
    keys_b = Keys(path_b, keys_a.data_key, keys_a.secrets)
    gateways: list[subprocess.Popen[str]] = []
    kraken = RecordingKraken(tier="pro", latency=latency)
    with etcd_cluster(tmp) as cluster, kraken, running(keys_a), running(keys_b):
        kraken.add_key(real_api_key("spot"), keys_a.secrets["spot"], "spot")
        try:
            urls = []
            for keys in (keys_a, keys_b):
                proc, url = start_gateway(keys.path, kraken.url, "--tier", "pro", "--etcd",
                                          cluster.endpoints, "--etcd-lease-ttl",
                                          str(lease_ttl), *gateway_args)
                gateways.append(proc)
                urls.append(url)
            yield Sites(cluster, kraken, [keys_a, keys_b], gateways, urls, creds)
        finally:
            for i, proc in enumerate(gateways):
                stop_gateway(proc)
                if proc.stderr is not None:  # kept for a failing test's reader
                    (tmp / f"gateway-{i}.log").write_text(proc.stderr.read())
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()


def run_bots(plan: list[tuple[str, str, Credential]], count: int, *,
             during: Callable[[], None] | None = None) -> list[dict[str, int]]:
    """Bot processes (client, gateway URL, grant) at once, `count` requests each; `during`
    runs on a thread meanwhile (to kill something mid-run). Their tallies, in plan order."""
    procs = [subprocess.Popen([sys.executable, "-m", "tests.gateway_clients", client, url,
                               str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
             for client, url, _ in plan]
    return tally_bots(procs, [cred for _, _, cred in plan], during=during)

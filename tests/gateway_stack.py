"""A whole gateway stack for end-to-end tests and the bench: a vault, its real agent, grants,
the strict Kraken stand-in, and `botvault gateway` as a real subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botvault import Vault
from botvault.grant_ops import add_grant

from .agent_support import SPOT_AND_FUTURES, Keys, make_vault, running
from .kraken_server import StrictKraken

ENTRIES = SPOT_AND_FUTURES


def real_api_key(entry: str) -> str:
    """The api key agent_support.make_vault gives entry `entry`."""
    return f"PUB{entry.upper().replace('-', '')}KEY"


@dataclass(frozen=True)
class Credential:
    api_key: str
    api_secret: str = field(repr=False)


@dataclass
class Stack:
    keys: Keys
    kraken: StrictKraken
    url: str
    gateway: subprocess.Popen[str]

    def grant(self, bot: str, entry: str, general: str = "full") -> Credential:
        with Vault.open_with_key(self.keys.path, self.keys.data_key) as vault:
            grant = add_grant(vault, bot, entry=entry, general=general, withdrawal="none")
        return Credential(grant.api_key, grant.api_secret.reveal())

    def real(self, entry: str) -> Credential:
        return Credential(real_api_key(entry), self.keys.secrets[entry])


def start_gateway(vault: Path, kraken_url: str, *extra: str, timeout: float = 30.0
                  ) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "botvault", "--vault", str(vault), "gateway", "--listen",
         "127.0.0.1:0", "--spot-url", kraken_url, "--futures-url", kraken_url, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if "listening on " not in line:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise RuntimeError(f"the gateway did not start: {line!r} {err!r}")
    return proc, line.strip().rsplit(" ", 1)[1]


def stop_gateway(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def tally_bots(procs: list[subprocess.Popen[str]], creds: list[Credential], *,
               during: Callable[[], None] | None = None) -> list[dict[str, int]]:
    """Hands each bot process (`tests.gateway_clients`, `tests.tls_clients`) its credential as
    a JSON line on stdin (the bots start together: each waits for its line), runs `during` on
    a thread meanwhile (to kill something mid-run); each bot must exit 0. Their tallies."""
    for proc, cred in zip(procs, creds, strict=True):
        assert proc.stdin is not None
        proc.stdin.write(json.dumps([cred.api_key, cred.api_secret]) + "\n")
        proc.stdin.close()
    thread = threading.Thread(target=during) if during else None
    if thread:
        thread.start()
    tallies = []
    for proc in procs:
        assert proc.stdout is not None
        out = proc.stdout.read()
        assert proc.wait(600) == 0
        proc.stdout.close()
        tallies.append(json.loads(out))
    if thread:
        thread.join()
    return tallies


@contextlib.contextmanager
def _agent(keys: Keys, *, sign_only: bool) -> Iterator[None]:
    with running(keys, sign_only=sign_only):
        yield


@contextlib.contextmanager
def gateway_stack(vault_path: Path, *, entries: dict[str, dict[str, str]] | None = None,
                  tier: str = "pro", latency: float = 0.0, gateway_args: tuple[str, ...] = (),
                  enforce_rate: bool = True, sign_only: bool = False) -> Iterator[Stack]:
    keys = make_vault(vault_path, entries or ENTRIES)
    with StrictKraken(tier=tier, latency=latency, enforce_rate=enforce_rate) as kraken, \
            _agent(keys, sign_only=sign_only):
        for name, kw in (entries or ENTRIES).items():
            product = "spot" if kw["exchange"] == "kraken-spot" else "futures"
            kraken.add_key(real_api_key(name), keys.secrets[name], product,
                           general=kw["general"], withdrawal=kw["withdrawal"])
        proc, url = start_gateway(keys.path, kraken.url, "--tier", tier, *gateway_args)
        stack = Stack(keys, kraken, url, proc)
        try:
            yield stack
            proc = stack.gateway  # a test may have replaced it (killed, restarted)
            code = stop_gateway(proc)
            assert code == 0, (code, proc.args, proc.stderr.read() if proc.stderr else "")
        finally:
            proc = stack.gateway
            stop_gateway(proc)
            if proc.stderr is not None:
                proc.stderr.close()
            if proc.stdout is not None:
                proc.stdout.close()


def env_without_agent() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BOTVAULT_AGENT")}


def ccxt_futures(base: str, grant: Credential) -> Any:
    """ccxt's krakenfutures with the grant as its key pair and every API URL at the gateway."""
    import ccxt

    return ccxt.krakenfutures({
        "apiKey": grant.api_key, "secret": grant.api_secret,
        "urls": {"api": {"public": f"{base}/derivatives/api/",
                         "private": f"{base}/derivatives/api/",
                         "charts": f"{base}/api/charts/", "history": f"{base}/api/history/"}}})

"""Shared helpers for the agent tests: vaults the agent subprocess accepts, real agents."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from botvault import Vault
from botvault.agent import AgentInfo, start_agent
from botvault.agent.socket_location import unix_address
from botvault.crypto import FLOOR

# The agent runs in its own process, where the test-only cheap KDF is not enabled, so the
# vaults it opens use the floor parameters (about 30 ms to create).
AGENT_KDF = FLOOR
PASSPHRASE = "agent test passphrase"


def b64secret(n: int = 64) -> str:
    return base64.b64encode(os.urandom(n)).decode()


@dataclass
class Keys:
    """A vault made for agent tests: its path, data key and the secrets of its entries."""

    path: Path
    data_key: bytes
    secrets: dict[str, str]


def spec(exchange: str, general: str = "full", withdrawal: str = "none") -> dict[str, str]:
    """One entry of a test vault (`make_vault`'s `entries` values): by default full general
    access, no withdrawal."""
    return {"exchange": exchange, "general": general, "withdrawal": withdrawal}


# One full-access Spot key and one Futures key, neither able to withdraw: the vault most
# agent, integration and gateway tests run against.
SPOT_AND_FUTURES = {"spot": spec("kraken-spot"), "fut": spec("kraken-futures")}


def pubkey(name: str) -> str:
    """The public api key `make_vault` gives the entry `name`."""
    return f"PUB{name.upper().replace('-', '')}KEY"


def make_vault(path: Path, entries: dict[str, dict[str, str]] | None = None) -> Keys:
    """A vault with `entries` (name -> add() keyword arguments, secret generated)."""
    entries = entries if entries is not None else {
        "spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"},
    }
    secrets: dict[str, str] = {}
    with Vault.create(path, PASSPHRASE, kdf=AGENT_KDF) as v:
        for name, kw in entries.items():
            secrets[name] = b64secret()
            v.add(name, api_key=pubkey(name),
                  api_secret=secrets[name], **kw)
        return Keys(v.path, v.hand_out_data_key(), secrets)


def start(keys: Keys, *, ttl: float = 60, idle: float = 60, allow_withdrawal: bool = False,
          socket_path: Path | None = None, sign_only: bool = False) -> AgentInfo:
    return start_agent(keys.path, keys.data_key, ttl=ttl, idle=idle,
                       allow_withdrawal=allow_withdrawal, socket_path=socket_path,
                       sign_only=sign_only)


def wait_exit(info: AgentInfo, timeout: float = 10.0) -> int:
    """The agent's exit code, waiting for it (the test process is its parent)."""
    assert info.process is not None
    return info.process.wait(timeout)


def stop(info: AgentInfo) -> None:
    """Make sure an agent started by a test is gone (SIGTERM, then SIGKILL)."""
    process = info.process
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@contextlib.contextmanager
def running(keys: Keys, *, ttl: float = 60, idle: float = 60, allow_withdrawal: bool = False,
            socket_path: Path | None = None, sign_only: bool = False) -> Iterator[AgentInfo]:
    info = start(keys, ttl=ttl, idle=idle, allow_withdrawal=allow_withdrawal,
                 socket_path=socket_path, sign_only=sign_only)
    try:
        yield info
    finally:
        stop(info)


def eventually(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02
               ) -> bool:
    """True as soon as `check()` is true, False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def private_runtime_dir() -> Path:
    """Create $XDG_RUNTIME_DIR (set per test by conftest) as a usable 0700 runtime dir."""
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(runtime, 0o700)
    return runtime


def runtime_vault(path: Path, entries: dict[str, dict[str, str]]) -> Keys:
    """`make_vault(path, entries)`, with a usable runtime dir for the agents it will start."""
    private_runtime_dir()
    return make_vault(path, entries)


def raw_connect(path: Path, timeout: float = 5.0) -> socket.socket:
    """A plain connected socket to the agent (no client, no checks): for speaking bytes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    with unix_address(path) as address:
        s.connect(address)
    return s


def read_until_eof(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data

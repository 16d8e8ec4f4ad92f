"""`botvault unlock / lock / status` and the commands that go through the agent, run as the
real console script in subprocesses (the agent is a process of its own anyway).

Vaults here use the KDF floor: the agent process does not have the test-only cheap KDF.
Every agent a test starts is stopped by the `agents` fixture (`botvault lock`, then SIGKILL
for whatever survived), and every unlock uses a short --ttl as a safety net.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from botvault import Vault, agent
from botvault.agent import socket_path_for
from botvault.exchanges.kraken import sign_spot
from tests.agent_support import PASSPHRASE, Keys, eventually, make_vault

LINUX = sys.platform.startswith("linux")
_SCRIPT = Path(sys.executable).with_name("botvault")
BOTVAULT = [str(_SCRIPT)] if _SCRIPT.exists() else [
    sys.executable, "-c", "from botvault.cli.main import main; main()"]
SH = shutil.which("sh") or "/bin/sh"
SAFETY_TTL = "60s"  # no agent of these tests outlives this, even if a teardown failed


def botvault(*args: str, input: str | None = None, timeout: float = 30
             ) -> subprocess.CompletedProcess[str]:
    """Run the console script. Without `input`, stdin is /dev/null: nothing to read. With
    it, `input` is the passphrase line (--passphrase-stdin) unless --secret-stdin is given,
    where it is the secret: standard input has one meaning per command."""
    argv = [*BOTVAULT, *args] if input is None or "--secret-stdin" in args else [
        *BOTVAULT, "--passphrase-stdin", *args]
    return subprocess.run(argv, input=input,
                          stdin=subprocess.DEVNULL if input is None else None,
                          capture_output=True, text=True, timeout=timeout, check=False)


def with_stdin_closed(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the console script with file descriptor 0 closed (sys.stdin is None there)."""
    return subprocess.run([SH, "-c", 'exec "$@" <&-', "sh", *BOTVAULT, *args],
                          capture_output=True, text=True, timeout=30, check=False)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited agent whose parent has not reaped
    it yet serves nothing and holds nothing)."""
    if LINUX:
        try:
            stat_line = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        return stat_line.rsplit(")", 1)[1].split()[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone_within(pid: int, timeout: float, interval: float = 0.02) -> bool:
    return eventually(lambda: not alive(pid), timeout=timeout, interval=interval)


class Agents:
    """Agents started with `botvault unlock` by one test; `stop_all` leaves none running."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def unlock(self, *args: str, ttl: str = SAFETY_TTL) -> int:
        done = botvault("unlock", "--ttl", ttl, *args, input=f"{PASSPHRASE}\n")
        assert done.returncode == 0, done.stderr
        found = re.search(r"agent pid (\d+)", done.stdout)
        assert found is not None, done.stdout
        pid = int(found.group(1))
        self.pids.append(pid)
        return pid

    def __enter__(self) -> Agents:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        botvault("lock", timeout=10)
        for pid in self.pids:
            if not gone_within(pid, 3):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                gone_within(pid, 3)


@pytest.fixture
def agents() -> Iterator[Agents]:
    with Agents() as started:
        yield started


@pytest.fixture
def keys(vault_path: Path) -> Keys:
    return make_vault(vault_path, {
        "spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"},
        "ro": {"exchange": "kraken-spot", "general": "read-only", "withdrawal": "none"},
        "wd": {"exchange": "kraken-spot", "general": "full", "withdrawal": "full"},
        "fut": {"exchange": "kraken-futures", "general": "full", "withdrawal": "none"},
    })


@pytest.fixture
def unlocked(keys: Keys, agents: Agents) -> int:
    """The pid of an agent serving `keys`' vault."""
    return agents.unlock()


def ints(text: str) -> list[int]:
    return [int(line) for line in text.splitlines()]


def assert_locked_with_hint(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 5, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("botvault: error: ")
    hint = [line for line in done.stderr.splitlines() if line.startswith("hint: ")]
    assert len(hint) == 1 and "botvault unlock" in hint[0]


# -- unlock, status, use, lock ---------------------------------------------------------------


def test_unlock_status_use_without_passphrase_then_lock(keys: Keys, agents: Agents) -> None:
    done = botvault("unlock", "--ttl", SAFETY_TTL, input=f"{PASSPHRASE}\n")
    assert done.returncode == 0, done.stderr
    # The time alone, or with the date when the expiry falls on another day (near midnight).
    assert re.fullmatch(rf"unlocked {re.escape(str(keys.path))} until "
                        r"(\d{4}-\d\d-\d\d )?\d\d:\d\d \(idle lock "
                        r"after 1h00m; agent pid \d+\)\n", done.stdout)
    assert done.stderr == ""
    pid = int(done.stdout.rsplit("agent pid ", 1)[1].rstrip(")\n"))
    agents.pids.append(pid)
    assert alive(pid)

    done = botvault("status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"unlocked: {keys.path}\nlocks in ")
    assert f"agent pid {pid}" in done.stdout
    done = botvault("status", "--json")
    assert done.returncode == 0
    state = json.loads(done.stdout)
    assert {"unlocked", "expires_in", "idle_expires_in", "socket", "pid"} <= set(state), state
    assert state["unlocked"] is True
    assert state["pid"] == pid
    assert 0 < state["expires_in"] <= 60
    assert 0 < state["idle_expires_in"] <= 3600

    # stdin is /dev/null: a command that asked for the passphrase would exit 5.
    done = botvault("list", "--json")
    assert done.returncode == 0, done.stderr
    assert [d["name"] for d in json.loads(done.stdout)] == ["fut", "ro", "spot", "wd"]
    done = botvault("show", "spot", "--json", "--reveal")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["api_secret"] == keys.secrets["spot"]
    done = botvault("nonce", "spot")
    assert done.returncode == 0, done.stderr
    assert len(ints(done.stdout)) == 1
    done = botvault("env", "spot", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"KRAKEN_API_KEY": "PUBSPOTKEY",
                                       "KRAKEN_API_SECRET": keys.secrets["spot"]}
    done = with_stdin_closed("list")  # no stdin at all works just as well
    assert done.returncode == 0, done.stderr
    assert "spot" in done.stdout

    done = botvault("lock")
    assert (done.returncode, done.stdout) == (0, "locked\n")
    assert gone_within(pid, 1.0)
    done = botvault("status")
    assert (done.returncode, done.stdout) == (5, f"locked: {keys.path}\n")
    assert json.loads(botvault("status", "--json").stdout)["unlocked"] is False

    assert_locked_with_hint(botvault("list"))  # stdin /dev/null: nothing to read
    done = botvault("lock")
    assert (done.returncode, done.stdout) == (0, "already locked\n")


def test_locked_with_stdin_closed_exits_5(keys: Keys) -> None:
    """Regression: with descriptor 0 closed (sys.stdin is None) this was an AttributeError,
    exit 1 "unexpected error" (fixed in e654f51)."""
    assert_locked_with_hint(with_stdin_closed("list"))


def test_status_json_names_the_socket(keys: Keys, unlocked: int) -> None:
    """Regression: `status --json` had no "socket" key (fixed in e654f51)."""
    state = json.loads(botvault("status", "--json").stdout)
    assert state["socket"] == str(socket_path_for(keys.path))


def test_second_unlock_says_already_unlocked_without_asking(unlocked: int) -> None:
    done = botvault("unlock")  # stdin /dev/null: it cannot ask
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("already unlocked: ")
    assert "locks in " in done.stdout
    assert json.loads(botvault("status", "--json").stdout)["pid"] == unlocked


def test_unlock_again_with_ttl_extends_but_never_shortens(unlocked: int) -> None:
    before = json.loads(botvault("status", "--json").stdout)
    assert before["expires_in"] <= 60
    done = botvault("unlock", "--ttl", "120s", "--idle", "90s")  # no passphrase asked
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("extended: ")
    after = json.loads(botvault("status", "--json").stdout)
    assert 60 < after["expires_in"] <= 120
    assert 60 < after["idle_expires_in"] <= 90
    assert after["pid"] == unlocked
    assert botvault("unlock", "--ttl", "5s").returncode == 0
    kept = json.loads(botvault("status", "--json").stdout)
    assert kept["expires_in"] > 60  # a shorter --ttl does not bring the lock forward
    assert kept["idle_expires_in"] <= 90  # and --idle, not given, stays as it was


def test_writes_while_unlocked_and_writes_by_others_are_seen(keys: Keys, unlocked: int) -> None:
    # Through the agent no passphrase is read: the first stdin line is the secret.
    secret = "generic secret with spaces, not a passphrase"
    done = botvault("add", "extra", "--exchange", "generic", "--api-key", "EXTRAKEY",
                    "--general", "read-only", "--withdrawal", "none", "--secret-stdin",
                    input=f"{secret}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("added extra (generic, general read-only, withdrawal none)")
    done = botvault("list", "--json")
    assert done.returncode == 0, done.stderr
    assert "extra" in [d["name"] for d in json.loads(done.stdout)]
    with Vault.open(keys.path, PASSPHRASE) as v:
        assert v.get("extra").api_secret.reveal() == secret

    # Another process saves with the passphrase; the agent's own reads (env goes through
    # its `get`) reload the newer generation.
    with Vault.open(keys.path, PASSPHRASE) as v:
        v.add("other", exchange="generic", api_key="OTHERKEY", api_secret="other-secret",
              general="read-only", withdrawal="none")
    done = botvault("env", "other", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"OTHER_API_KEY": "OTHERKEY",
                                       "OTHER_API_SECRET": "other-secret"}
    done = botvault("list", "--json")
    assert {"extra", "other"} <= {d["name"] for d in json.loads(done.stdout)}
    with agent.connect(keys.path) as client:
        assert {"extra", "other"} <= {e["name"] for e in client.list()}
    assert json.loads(botvault("status", "--json").stdout)["pid"] == unlocked


# -- lifetime --------------------------------------------------------------------------------


@pytest.mark.slow
def test_ttl_locks_even_while_used(keys: Keys, agents: Agents) -> None:
    pid = agents.unlock("--idle", "1h", ttl="2s")
    assert botvault("status").returncode == 0
    # Polling status is use: it keeps the idle timer fresh but cannot extend the TTL.
    assert eventually(lambda: botvault("status").returncode == 5, timeout=8, interval=0.3)
    assert gone_within(pid, 1)
    assert botvault("list").returncode == 5


@pytest.mark.slow
def test_idle_locks_when_unused(keys: Keys, agents: Agents) -> None:
    pid = agents.unlock("--idle", "2s", ttl="1h")
    assert botvault("status").returncode == 0
    # Watched through /proc only: any request to the agent would reset its idle timer.
    assert gone_within(pid, 8, interval=0.1)
    assert botvault("status").returncode == 5


def test_sigkilled_agent_is_seen_as_locked_promptly_and_can_be_replaced(
        keys: Keys, agents: Agents, unlocked: int) -> None:
    os.kill(unlocked, signal.SIGKILL)
    assert gone_within(unlocked, 5)
    began = time.monotonic()
    done = botvault("status")
    elapsed = time.monotonic() - began
    assert done.returncode == 5
    assert done.stdout == f"locked: {keys.path}\n"
    assert elapsed < 5  # a stale socket is refused at once, not after a timeout
    fresh = agents.unlock()
    assert fresh != unlocked
    done = botvault("status", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["pid"] == fresh


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_agent_argv_and_environment_hold_no_passphrase_or_secret(keys: Keys,
                                                                unlocked: int) -> None:
    cmdline = Path(f"/proc/{unlocked}/cmdline").read_bytes()
    environ = Path(f"/proc/{unlocked}/environ").read_bytes()
    assert b"botvault.agent.server" in cmdline  # it is the agent we are looking at
    key = keys.data_key
    forbidden = [PASSPHRASE.encode(), key, key.hex().encode(), base64.b64encode(key),
                 base64.b64encode(key).rstrip(b"=")]
    forbidden += [s.encode() for s in keys.secrets.values()]
    for blob in (cmdline, environ):
        for needle in forbidden:
            assert needle not in blob


# -- nonces ----------------------------------------------------------------------------------


def test_nonce_count_concurrency_and_peek(unlocked: int) -> None:
    done = botvault("nonce", "spot", "--count", "5")
    assert done.returncode == 0, done.stderr
    five = ints(done.stdout)
    assert len(five) == 5
    assert all(a < b for a, b in itertools.pairwise(five))

    workers = [subprocess.Popen([*BOTVAULT, "nonce", "spot", "--count", "200"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    batches = []
    for worker in workers:
        out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        batches.append(ints(out))
    for batch in batches:
        assert len(batch) == 200
        assert all(a < b for a, b in itertools.pairwise(batch))
    together = batches[0] + batches[1]
    assert len(set(together)) == 400
    assert min(together) > max(five)  # both started after the five were handed out

    done = botvault("nonce", "spot", "--peek")
    assert done.returncode == 0, done.stderr
    found = re.match(r"last: (\d+) \(ms\)\nahead of the clock: \d+\.\d{3} s\n$", done.stdout)
    assert found is not None, done.stdout
    last = int(found.group(1))
    assert last == max(together)
    again = botvault("nonce", "spot", "--peek").stdout  # peeking allocated nothing
    assert again.splitlines()[0] == done.stdout.splitlines()[0]
    after = ints(botvault("nonce", "spot").stdout)
    assert after[0] > last


# -- sign ------------------------------------------------------------------------------------


def _signed(done: subprocess.CompletedProcess[str]) -> tuple[int, str, dict[str, str]]:
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc) == {"nonce", "body", "headers"}
    return doc["nonce"], doc["body"], doc["headers"]


def test_sign_through_the_agent_verifies(keys: Keys, unlocked: int) -> None:
    before = ints(botvault("nonce", "spot").stdout)[0]
    path = "/0/private/Balance"
    nonce, body, headers = _signed(botvault("sign", "spot", path, "--json"))
    assert nonce > before
    assert body == f"nonce={nonce}"
    assert headers == {"API-Key": "PUBSPOTKEY",
                       "API-Sign": sign_spot(keys.secrets["spot"], path, nonce, body)}
    nonce, body, headers = _signed(botvault("sign", "spot", path, "--data", "asset=XBT",
                                            "--json"))
    assert f"nonce={nonce}" in body.split("&") and "asset=XBT" in body.split("&")
    assert headers["API-Sign"] == sign_spot(keys.secrets["spot"], path, nonce, body)
    done = botvault("sign", "spot", path)  # plain output: the body, then the headers
    assert done.returncode == 0, done.stderr
    body, key_line, sign_line = done.stdout.splitlines()
    nonce = int(body.removeprefix("nonce="))
    assert key_line == "API-Key: PUBSPOTKEY"
    assert sign_line == "API-Sign: " + sign_spot(keys.secrets["spot"], path, nonce, body)
    for secret in keys.secrets.values():
        assert secret not in done.stdout + done.stderr


def test_sign_refuses_beyond_scope_and_withdrawals_unless_allowed(keys: Keys,
                                                                  agents: Agents) -> None:
    agents.unlock()
    done = botvault("sign", "ro", "/0/private/AddOrder", "--json")
    assert done.returncode == 6
    assert (done.stdout, done.stderr.startswith("botvault: error: ")) == ("", True)
    _signed(botvault("sign", "ro", "/0/private/Balance", "--json"))  # reads are fine
    withdraw = ("sign", "wd", "/0/private/Withdraw", "--data",
                "asset=XBT&key=wallet&amount=0.1", "--json")
    done = botvault(*withdraw)
    assert done.returncode == 6
    assert "--allow-withdrawal" in done.stderr
    assert botvault("lock").returncode == 0

    agents.unlock("--allow-withdrawal")
    assert json.loads(botvault("status", "--json").stdout)["allow_withdrawal"] is True
    nonce, body, headers = _signed(botvault(*withdraw))
    assert body == f"nonce={nonce}&asset=XBT&key=wallet&amount=0.1"
    assert headers["API-Sign"] == sign_spot(keys.secrets["wd"], "/0/private/Withdraw", nonce,
                                            body)
    assert botvault("sign", "ro", "/0/private/AddOrder").returncode == 6  # still refused


def test_sign_without_agent_reads_the_passphrase(keys: Keys) -> None:
    assert botvault("status").returncode == 5
    path = "/0/private/Balance"
    nonce, body, headers = _signed(botvault("sign", "spot", path, "--json",
                                            input=f"{PASSPHRASE}\n"))
    assert body == f"nonce={nonce}"
    assert headers["API-Sign"] == sign_spot(keys.secrets["spot"], path, nonce, body)
    # In-process signing never signs withdrawals, whatever the key may do.
    done = botvault("sign", "wd", "/0/private/Withdraw", input=f"{PASSPHRASE}\n")
    assert done.returncode == 6
    assert botvault("sign", "spot", path).returncode == 5  # locked, nothing to read

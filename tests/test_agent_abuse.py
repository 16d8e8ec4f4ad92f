"""The agent under abuse (issue 10, items 5, 7, 9, 10): hostile files, idle connections by
the thousand, no descriptors left, a stopped agent, answers larger than one frame.

Real agent processes, real sockets, real signals; the other-user cases run a child as
nobody (65534) when the tests run as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from botvault import agent
from botvault.agent import socket_location
from botvault.agent.client import FALLBACK_TIMEOUT
from botvault.agent.listener import bind_listener
from botvault.agent.ops import Agent
from botvault.agent.protocol import MAX_FRAME
from botvault.agent.server import PER_PEER, AgentServer
from botvault.entries import Entry
from botvault.errors import FormatError
from botvault.integrations.agent_signed import ccxt_exchange
from botvault.open_vault import Vault
from botvault.scopes import General, Withdrawal
from botvault.secret import Secret
from tests.agent_support import (
    AGENT_KDF,
    PASSPHRASE,
    Keys,
    b64secret,
    make_vault,
    raw_connect,
    running,
)
from tests.helpers.files import private

LINUX = sys.platform.startswith("linux")
NOBODY = 65534
_SCRIPT = Path(sys.executable).with_name("botvault")
BOTVAULT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "botvault"]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_vault(tmp_path / "store" / "vault.bv")


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    return private(tmp_path / "pass", PASSPHRASE + "\n")


def botvault(*args: str, env: dict[str, str] | None = None, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOTVAULT, *args], input="", capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _idle_cpu_ticks(pid: int, seconds: float = 1.0) -> int:
    """CPU the process uses while nobody talks to it for `seconds`."""
    before = _cpu_ticks(pid)
    threading.Event().wait(seconds)
    return _cpu_ticks(pid) - before


def _connect_when_room(path: Path, deadline: float) -> socket.socket:
    """Connect, waiting while the agent's backlog is full (EAGAIN on a unix socket)."""
    while True:
        try:
            return raw_connect(path, timeout=10)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextlib.contextmanager
def _fd_limit(wanted: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target < wanted:
        pytest.skip(f"needs {wanted} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- item 5: the vault path becomes a FIFO -----------------------------------------------------


def test_agent_keeps_answering_when_the_vault_becomes_a_fifo(keys: Keys) -> None:
    with running(keys), agent.connect(keys.path, call_timeout=10) as client:
        assert [e["name"] for e in client.list()] == ["spot"]
        keys.path.unlink()
        os.mkfifo(keys.path, 0o600)
        # Before: the reload opened the FIFO and blocked, holding the agent's lock.
        state = client.status()
        assert state["unlocked"] is True
        assert "FIFO" in str(state["vault_problem"])
        with pytest.raises(FormatError, match="FIFO"):
            client.list()
        with pytest.raises(FormatError, match="FIFO"):
            client.next_nonce("spot")
        assert client.status()["unlocked"] is True


# -- item 9: idle connections --------------------------------------------------------------------


@contextlib.contextmanager
def _in_process_server(keys: Keys, socket_path: Path, **limits: Any) -> Iterator[AgentServer]:
    """A real AgentServer on a real socket, served by a thread of this process."""
    vault = Vault.open_with_key(keys.path, keys.data_key)
    served = Agent(vault, ttl=120, idle=120, allow_withdrawal=False)
    server = AgentServer(served, bind_listener(socket_path), **limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
        assert not thread.is_alive()


def test_idle_connection_is_closed_after_the_timeout(keys: Keys, tmp_path: Path) -> None:
    sock = tmp_path / "run" / "a.sock"
    sock.parent.mkdir(mode=0o700)
    with _in_process_server(keys, sock, conn_idle=0.3) as server:
        idle = raw_connect(sock, timeout=30)
        # Closed by the agent: recv returns end-of-file instead of waiting forever.
        assert idle.recv(1) == b""
        idle.close()
        with agent.AgentClient(sock) as client:  # the agent itself goes on
            assert client.status()["unlocked"] is True
        assert server.connection_count() <= 1


def test_connections_per_client_are_capped(keys: Keys, tmp_path: Path) -> None:
    sock = tmp_path / "run" / "a.sock"
    sock.parent.mkdir(mode=0o700)
    with _in_process_server(keys, sock, per_peer=4, max_connections=8) as server:
        held = [raw_connect(sock) for _ in range(20)]
        try:
            # All from this process: only the 4 newest are kept, the others were closed.
            closed = sum(1 for s in held[:16] if s.recv(1) == b"")
            assert closed == 16
            assert server.connection_count() <= 4
        finally:
            for s in held:
                s.close()


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_two_thousand_idle_connections_do_not_starve_others(keys: Keys) -> None:
    with running(keys) as info, _fd_limit(2300):
        held: list[socket.socket] = []
        try:
            deadline = time.monotonic() + 60
            for _ in range(2000):
                held.append(_connect_when_room(info.socket_path, deadline))
            # The agent holds a bounded number, whatever one client opened.
            assert _open_fds(info.pid) < 2 * PER_PEER + 32
            for args in (["status"], ["nonce", "spot"],
                         ["run", "spot", "--", sys.executable, "-c", "pass"]):
                done = botvault(*args)
                assert done.returncode == 0, (args, done.stderr)
            assert _idle_cpu_ticks(info.pid) <= 3  # blocked threads use no CPU
        finally:
            for s in held:
                s.close()


@pytest.mark.skipif(not LINUX or os.geteuid() != 0,
                    reason="prlimit on another process needs root (and /proc)")
def test_emfile_on_accept_does_not_spin(keys: Keys) -> None:
    with running(keys) as info:
        baseline = _open_fds(info.pid)
        resource.prlimit(info.pid, resource.RLIMIT_NOFILE, (baseline + 6, baseline + 6))
        held = []
        try:
            for _ in range(40):
                with contextlib.suppress(OSError):
                    held.append(raw_connect(info.socket_path, timeout=2))
            # Connections keep arriving at an agent with no descriptor left: it must not
            # busy-loop on a listener that stays readable.
            assert _idle_cpu_ticks(info.pid) <= 10
        finally:
            for s in held:
                s.close()
        with agent.connect(keys.path) as client:
            assert client.status()["unlocked"] is True


# -- item 9: a stopped agent ------------------------------------------------------------------


def test_stopped_agent_falls_back_to_the_passphrase(keys: Keys, passphrase_file: Path) -> None:
    with running(keys) as info:
        os.kill(info.pid, signal.SIGSTOP)
        try:
            done = botvault("list", "--vault", str(keys.path), "--passphrase-file",
                            str(passphrase_file), timeout=10 + 4 * FALLBACK_TIMEOUT)
        finally:
            os.kill(info.pid, signal.SIGCONT)
    assert done.returncode == 0, done.stderr
    assert "spot" in done.stdout
    assert "botvault: warning: not using the agent" in done.stderr


def test_stopped_agent_without_a_passphrase_source_is_an_error(keys: Keys) -> None:
    with running(keys) as info:
        os.kill(info.pid, signal.SIGSTOP)
        try:
            process = subprocess.run([*BOTVAULT, "nonce", "spot", "--vault", str(keys.path)],
                                     stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                     timeout=60, check=False)
        finally:
            os.kill(info.pid, signal.SIGCONT)
    assert process.returncode != 0
    assert "Traceback" not in process.stderr


# -- item 7: the agent's directory ----------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as nobody")
def test_another_user_cannot_create_the_agent_directory_first(
        monkeypatch: pytest.MonkeyPatch, keys: Keys) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    target = socket_location.runtime_dir()
    # The first existing directory above it: whoever can write there can create it first.
    existing = next(p for p in target.parents if os.path.lexists(p))
    pid = os.fork()
    if pid == 0:  # the other user
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os._exit(1 if os.access(existing, os.W_OK) else 0)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"nobody could create {target} in {existing}"
    with running(keys) as info:
        assert info.socket_path.parent == target
        with agent.connect(keys.path) as client:
            assert client.status()["unlocked"] is True


def test_unusable_agent_directory_warns_and_goes_on(keys: Keys, passphrase_file: Path,
                                                    tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # noqa: S103 -- the insecure mode under test
    env = {**os.environ, "BOTVAULT_AGENT_SOCKET": str(shared / "agent.sock")}
    done = botvault("list", "--vault", str(keys.path), "--passphrase-file",
                    str(passphrase_file), env=env)
    assert done.returncode == 0, done.stderr
    assert "spot" in done.stdout
    assert "botvault: warning: not using the agent" in done.stderr
    # A command that needs the agent still refuses the directory.
    done = botvault("status", "--vault", str(keys.path), env=env)
    assert done.returncode == 7, done.stderr


def test_unusable_default_agent_directory_warns_and_goes_on(
        keys: Keys, passphrase_file: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    state = Path(env["XDG_STATE_HOME"]) / "botvault" / "agent"
    state.mkdir(parents=True)
    os.chmod(state, 0o755)  # noqa: S103 -- the insecure mode under test
    done = botvault("nonce", "spot", "--vault", str(keys.path), "--passphrase-file",
                    str(passphrase_file), env=env)
    assert done.returncode == 0, done.stderr
    assert "botvault: warning: not using the agent" in done.stderr


# -- item 10: list answers of any size -------------------------------------------------------


def _big_vault(path: Path, count: int, note: str) -> Keys:
    entries = [Entry(name=f"bot-{i:03d}", exchange="kraken-spot", api_key=f"PUB{i:03d}",
                     api_secret=Secret(b64secret()), general=General("full"),
                     withdrawal=Withdrawal("none"), note=note) for i in range(count)]
    with Vault.create(path, PASSPHRASE, kdf=AGENT_KDF) as v:
        v.import_entries(entries)  # one save, not 300
        return Keys(v.path, v.hand_out_data_key(), {})


@pytest.mark.parametrize("note", ["n" * 4096, "é" * 4096])
def test_list_through_the_agent_fits_any_vault(note: str, tmp_path: Path) -> None:
    keys = _big_vault(tmp_path / "big" / "vault.bv", 300, note)
    with running(keys), agent.connect(keys.path) as client:
        listed = client.list()
        assert [e["name"] for e in listed] == [f"bot-{i:03d}" for i in range(300)]
        assert all(e["note"] == note for e in listed)
        # The integration helpers find a key through the same listing.
        ccxt = pytest.importorskip("ccxt")
        exchange = ccxt_exchange(ccxt.kraken, "bot-299", client)
        assert exchange.apiKey == "PUB299"


def test_escaped_notes_above_a_frame_list(tmp_path: Path) -> None:
    # 4 bytes of UTF-8 per character in the vault, 12 once escaped on the wire.
    keys = _big_vault(tmp_path / "wide" / "vault.bv", 3, "\U0001f600" * 4096)
    with running(keys), agent.connect(keys.path) as client:
        listed = client.list()
        assert [e["note"] for e in listed] == ["\U0001f600" * 4096] * 3
        assert len(json.dumps(listed)) > 2 * MAX_FRAME

"""The agent as a real process: socket location and permissions, peers of another uid,
lifetime (TTL, idle, lock, signals, SIGKILL), process hardening, many clients at once.

Every test here starts the real agent (`python -m botvault.agent.server`) unless it says it
runs the server in-process (to patch it or to shorten its timeouts).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from botvault import (
    AlreadyExistsError,
    Entry,
    InsecurePermissionsError,
    LockedError,
    NotFoundError,
    Vault,
    agent,
)
from botvault.agent import hardening, launcher, socket_location
from botvault.agent.listener import bind_listener
from botvault.agent.ops import Agent
from botvault.agent.server import AgentServer
from tests.agent_support import (
    AGENT_KDF,
    PASSPHRASE,
    Keys,
    eventually,
    make_vault,
    raw_connect,
    read_until_eof,
    running,
    start,
    stop,
    wait_exit,
)

LINUX = sys.platform.startswith("linux")


@pytest.fixture
def keys(vault_path: Path) -> Keys:
    return make_vault(vault_path, {
        "spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"},
        "futures": {"exchange": "kraken-futures", "general": "read-only", "withdrawal": "none"},
    })


@pytest.fixture
def unlocked(keys: Keys) -> Iterator[agent.AgentInfo]:
    with running(keys) as info:
        yield info


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- 1. where the socket lives -------------------------------------------------------------


def test_socket_in_xdg_runtime_dir_private(unlocked: agent.AgentInfo) -> None:
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    sock = unlocked.socket_path
    assert sock == agent.socket_path_for() == socket_location.runtime_dir() / sock.name
    assert sock.parent == runtime / "botvault"
    st = os.lstat(sock.parent)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and _mode(sock.parent) == 0o700
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid() and _mode(sock) == 0o600
    with agent.connect() as client:
        assert client.status()["pid"] == unlocked.pid


@pytest.mark.parametrize("problem", ["unset", "missing", "group-readable", "symlink"])
def test_runtime_dir_falls_back_to_the_state_dir(problem: str, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    if problem == "unset":
        monkeypatch.delenv("XDG_RUNTIME_DIR")
    elif problem == "missing":
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "nowhere"))
    elif problem == "group-readable":
        os.chmod(runtime, 0o750)  # noqa: S103 -- the insecure mode under test
    else:
        link = tmp_path / "runtime-link"
        link.symlink_to(runtime)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(link))
    # Never a fixed name under /tmp, which another user could create first (issue 10.7).
    assert socket_location.runtime_dir() == tmp_path / "xdg-state" / "botvault" / "agent"


def test_agent_in_state_dir_fallback(monkeypatch: pytest.MonkeyPatch, keys: Keys,
                                     tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    with running(keys) as info:
        assert info.socket_path.parent == tmp_path / "xdg-state" / "botvault" / "agent"
        st = os.lstat(info.socket_path.parent)
        assert st.st_uid == os.getuid() and _mode(info.socket_path.parent) == 0o700
        assert _mode(info.socket_path) == 0o600
        with agent.connect() as client:
            client.lock()
        assert wait_exit(info) == 0
    assert not info.socket_path.exists()
    assert not info.socket_path.with_name(info.socket_path.name + ".lock").exists()


@pytest.mark.parametrize("problem", ["mode", "owner", "symlink"])
def test_insecure_socket_dir_refused(problem: str, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path, keys: Keys) -> None:
    # The fallback root is moved to a test dir: the real /tmp/botvault-UID is left alone.
    root = tmp_path / "tmproot"
    root.mkdir()
    monkeypatch.setattr(socket_location, "_FALLBACK_ROOT", root)
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    directory = socket_location.runtime_dir()
    assert directory == root / "agent"
    if problem == "symlink":
        real = tmp_path / "elsewhere"
        real.mkdir(mode=0o700)
        directory.symlink_to(real)
    else:
        directory.mkdir(mode=0o700)
        if problem == "mode":
            os.chmod(directory, 0o755)  # noqa: S103 -- the insecure mode under test
        else:
            os.chown(directory, 65534, 65534)
    with pytest.raises(InsecurePermissionsError):
        start(keys)
    with pytest.raises(InsecurePermissionsError):
        agent.connect()


def test_dir_loosened_after_start_is_refused_by_clients(unlocked: agent.AgentInfo) -> None:
    directory = unlocked.socket_path.parent
    os.chmod(directory, 0o711)  # noqa: S103 -- the insecure mode under test
    try:
        with pytest.raises(InsecurePermissionsError, match="accessible by other users"):
            agent.connect()
    finally:
        os.chmod(directory, 0o700)
    os.chmod(unlocked.socket_path, 0o666)  # noqa: S103 -- the insecure mode under test
    try:
        with pytest.raises(InsecurePermissionsError, match="socket"):
            agent.connect()
    finally:
        os.chmod(unlocked.socket_path, 0o600)
    with agent.connect() as client:
        assert client.status()["unlocked"] is True


def test_one_agent_per_vault_path(unlocked: agent.AgentInfo, keys: Keys, tmp_path: Path
                                  ) -> None:
    with pytest.raises(AlreadyExistsError, match="already unlocked"):
        start(keys)
    assert unlocked.process is not None and unlocked.process.poll() is None
    other = make_vault(tmp_path / "other" / "vault.bv")
    with running(other) as second:
        assert second.socket_path != unlocked.socket_path
        with agent.connect(other.path) as client:
            assert client.status()["vault"] == str(other.path)
    with agent.connect(keys.path) as client:
        assert client.status()["pid"] == unlocked.pid


def test_socket_override(monkeypatch: pytest.MonkeyPatch, keys: Keys) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bv-"))
    try:
        sock = directory / "a.sock"
        monkeypatch.setenv("BOTVAULT_AGENT_SOCKET", str(sock))
        with running(keys) as info:
            assert info.socket_path == sock
            with agent.connect("/some/other/vault.bv") as client:
                assert client.status()["vault"] == str(keys.path)
    finally:
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()


def test_long_socket_path(keys: Keys, tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True, mode=0o700)
    sock = deep / "agent.sock"
    assert len(os.fsencode(sock)) > 108
    with running(keys, socket_path=sock) as info:
        assert info.socket_path == sock and stat.S_ISSOCK(os.lstat(sock).st_mode)
        with agent.AgentClient(sock) as client:
            assert client.status()["pid"] == info.pid


# -- 2. peers of another uid ---------------------------------------------------------------


def _as_nobody_connect(sock: Path) -> bytes | str:
    """Fork a child that becomes uid 65534, connects, sends a status request and returns
    what it received (b"" for a closed connection) or the name of the error it got."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(str(sock))
            payload = json.dumps({"op": "status"}).encode()
            try:
                s.sendall(struct.pack(">I", len(payload)) + payload)
                got = s.recv(65536)
                result = {"data": base64.b64encode(got).decode()}
            except OSError as exc:
                result = {"error": type(exc).__name__}
            os.write(write_end, json.dumps(result).encode())
        except BaseException as exc:
            os.write(write_end, json.dumps({"setup": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    os.waitpid(pid, 0)
    result = json.loads(raw)
    assert "setup" not in result, result
    return base64.b64decode(result["data"]) if "data" in result else str(result["error"])


@pytest.mark.skipif(not LINUX or os.getuid() != 0, reason="needs root to become another uid")
def test_other_uid_gets_connection_closed_with_nothing(keys: Keys) -> None:
    # A copy of the setup with loosened permissions, in a dir uid 65534 can reach, so that
    # only the peer check stands between that uid and the agent.
    directory = Path(tempfile.mkdtemp(prefix="bv-peer-"))
    sock = directory / "a.sock"
    try:
        with running(keys, socket_path=sock) as info:
            os.chmod(directory, 0o711)  # noqa: S103 -- lets uid 65534 reach the socket
            os.chmod(sock, 0o666)  # noqa: S103 -- so only the peer check stands in its way
            got = _as_nobody_connect(sock)
            assert got in (b"", "ConnectionResetError", "BrokenPipeError")
            os.chmod(directory, 0o700)
            os.chmod(sock, 0o600)
            with agent.AgentClient(sock) as client:
                assert client.status()["pid"] == info.pid
    finally:
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()


@pytest.fixture
def inprocess(keys: Keys, tmp_path: Path) -> Iterator[tuple[AgentServer, Vault]]:
    """The server in a thread of this process, so that tests can patch it."""
    vault = Vault.open_with_key(keys.path, keys.data_key)
    bound = bind_listener(tmp_path / "inproc.sock")
    server = AgentServer(Agent(vault, ttl=60, idle=60, allow_withdrawal=False), bound,
                         frame_timeout=0.3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, vault
    server.stop()
    thread.join(5)


def _raw_status(sock: Path) -> bytes:
    with raw_connect(sock) as s:
        payload = b'{"op":"status"}'
        try:
            s.sendall(struct.pack(">I", len(payload)) + payload)
            return s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""  # closed by the agent before (or while) we wrote: nothing came back


def test_peer_check_patched_closes_connection(inprocess: tuple[AgentServer, Vault],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = inprocess
    assert _raw_status(server.socket_path)[4:].startswith(b'{"ok":true')
    monkeypatch.setattr(hardening, "peer_uid", lambda _sock: os.getuid() + 1)
    assert _raw_status(server.socket_path) == b""
    # The client checks the agent's uid as well, before sending anything.
    with pytest.raises(InsecurePermissionsError, match="does not run as your user"):
        agent.AgentClient(server.socket_path)
    monkeypatch.undo()
    with agent.AgentClient(server.socket_path) as client:
        assert client.status()["unlocked"] is True


def test_peer_uid_is_ours_on_a_real_socket() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert hardening.peer_uid(a) == os.getuid()
        assert hardening.peer_allowed(b)


# -- 4. lifetime -----------------------------------------------------------------------------


def test_lock_wipes_and_exits(unlocked: agent.AgentInfo) -> None:
    with agent.connect() as client:
        client.lock()
    assert not unlocked.socket_path.exists()  # gone before the answer came back
    with pytest.raises(LockedError):
        agent.connect()
    assert wait_exit(unlocked) == 0
    assert os.listdir(unlocked.socket_path.parent) == []  # the agent lock file too
    assert not unlocked.socket_path.exists()
    with pytest.raises(LockedError, match="locked"):
        agent.connect()


# What the timers decide (use extends the idle limit, never the TTL) is tested on the agent's
# injected clock in test_timers_use_the_monotonic_clock. These two check only that the real
# process acts on them: it exits by itself, wipes, and removes its socket, with no sleeps or
# wall-clock bounds in the test.
@pytest.mark.parametrize(("ttl", "idle"), [(0.5, 60), (60, 0.5)], ids=["ttl", "idle"])
def test_the_process_exits_when_a_timer_fires(keys: Keys, ttl: float, idle: float) -> None:
    with running(keys, ttl=ttl, idle=idle) as info:
        assert wait_exit(info, 30) == 0
        assert not info.socket_path.exists()
        with pytest.raises(LockedError):
            agent.connect().status()


def test_status_after_expiry_raises_locked_on_an_open_client(keys: Keys) -> None:
    with running(keys, ttl=0.6, idle=60) as info:
        client = agent.connect()
        assert client.status()["unlocked"] is True
        wait_exit(info)
        with pytest.raises(LockedError):
            client.status()
        client.close()


def test_timers_use_the_monotonic_clock(keys: Keys) -> None:
    now = [1000.0]
    vault = Vault.open_with_key(keys.path, keys.data_key)
    with vault:
        a = Agent(vault, ttl=10, idle=3, allow_withdrawal=False, clock=lambda: now[0])
        assert a.time_left() == 3
        now[0] += 2
        a.handle({"op": "status"})
        assert a.time_left() == 3
        now[0] += 2.5
        assert a.time_left() == pytest.approx(0.5)
        now[0] += 3.5  # 1008: in use again just before the idle limit
        a.handle({"op": "status"})
        assert a.time_left() == pytest.approx(2)  # the TTL (1010) is the nearer limit now
        now[0] += 2
        assert a.time_left() == 0
    assert Agent.__init__.__kwdefaults__ is not None
    assert Agent.__init__.__kwdefaults__["clock"] is time.monotonic


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_wipes_and_exits(unlocked: agent.AgentInfo, signum: int) -> None:
    os.kill(unlocked.pid, signum)
    assert wait_exit(unlocked) == 0
    assert not unlocked.socket_path.exists()


def test_stop_wipes_the_data_key_in_process(inprocess: tuple[AgentServer, Vault]) -> None:
    server, vault = inprocess
    # The private buffer itself, unavoidably: what is wiped is the bytearray the Vault
    # holds, which no public method hands out (hand_out_data_key returns a copy).
    key = vault._data_key
    assert any(key)
    with agent.AgentClient(server.socket_path) as client:
        client.lock()
    assert eventually(lambda: not any(key))
    assert eventually(lambda: not server.socket_path.exists())


# -- 5. a killed agent -------------------------------------------------------------------------


def test_sigkill_leaves_stale_socket_that_is_detected_and_replaced(keys: Keys) -> None:
    info = start(keys)
    try:
        os.kill(info.pid, signal.SIGKILL)
        wait_exit(info)
        assert stat.S_ISSOCK(os.lstat(info.socket_path).st_mode)  # left behind
        began = time.monotonic()
        with pytest.raises(LockedError, match="stale"):
            agent.connect()
        assert time.monotonic() - began < 1.0
        with running(keys) as fresh:
            assert fresh.pid != info.pid
            with agent.connect() as client:
                assert client.status()["pid"] == fresh.pid
    finally:
        stop(info)


def test_open_client_reconnects_to_a_restarted_agent(keys: Keys) -> None:
    first = start(keys)
    client = agent.connect()
    try:
        assert client.status()["pid"] == first.pid
        os.kill(first.pid, signal.SIGKILL)
        wait_exit(first)
        with running(keys) as second:
            assert client.status()["pid"] == second.pid  # one transparent reconnect
    finally:
        client.close()
        stop(first)


def test_start_with_wrong_key_reports_and_leaves_nothing(keys: Keys) -> None:
    from botvault import AuthenticationError

    with pytest.raises(AuthenticationError):
        launcher.start_agent(keys.path, bytes(32), ttl=10, idle=10, allow_withdrawal=False)
    with pytest.raises(LockedError):
        agent.connect()


def test_start_for_missing_vault(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        launcher.start_agent(tmp_path / "store" / "none.bv", bytes(32), ttl=10, idle=10,
                             allow_withdrawal=False)


# -- 6. the key travels by pipe only; hardening --------------------------------------------------


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_key_not_in_argv_or_environment_and_process_hardened(unlocked: agent.AgentInfo,
                                                             keys: Keys) -> None:
    pid = unlocked.pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    key = keys.data_key
    forbidden = [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key),
                 base64.urlsafe_b64encode(key), base64.b64encode(key).rstrip(b"=")]
    forbidden += [s.encode() for s in keys.secrets.values()]
    forbidden += [PASSPHRASE.encode()]
    for blob in (cmdline, environ):
        for needle in forbidden:
            assert needle not in blob
    assert cmdline.split(b"\0")[1:3] == [b"-m", b"botvault.agent.server"]
    limits = Path(f"/proc/{pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"]
    with agent.connect() as client:
        status = client.status()
    # PR_GET_DUMPABLE as the agent itself reads it: /proc ownership proves nothing here,
    # since the tests run as root and root's /proc files are root's anyway.
    assert status["dumpable"] is False
    assert status["core_limit"] == [0, 0]
    assert os.getsid(pid) == pid  # own session: the terminal closing does not reach it
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"


def test_launcher_passes_nothing_secret_to_popen(monkeypatch: pytest.MonkeyPatch, keys: Keys
                                                 ) -> None:
    seen: dict[str, object] = {}
    real = subprocess.Popen

    def spy(args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        seen["args"], seen["env"] = args, kw.get("env")
        seen["kw"] = {k: v for k, v in kw.items() if k != "env"}
        return real(args, **kw)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(subprocess, "Popen", spy)
    info = start(keys)
    try:
        text = json.dumps([seen["args"], seen["env"]])
        assert base64.b64encode(keys.data_key).decode() not in text
        assert keys.data_key.hex() not in text
        kw = seen["kw"]
        assert isinstance(kw, dict)
        assert kw["start_new_session"] is True and kw["close_fds"] is True
        assert kw["stdin"] == subprocess.PIPE
    finally:
        stop(info)


# -- 7. many clients --------------------------------------------------------------------------

_NONCE_WORKER = """
import json, sys
from botvault import agent
with agent.connect(sys.argv[1]) as client:
    got = [client.next_nonce("spot") for _ in range(int(sys.argv[2]))]
print(json.dumps(got))
"""


@pytest.mark.slow
def test_eight_processes_thousand_nonces_each(unlocked: agent.AgentInfo, keys: Keys) -> None:
    per = 1000
    workers = [subprocess.Popen([sys.executable, "-c", _NONCE_WORKER, str(keys.path), str(per)],
                                stdout=subprocess.PIPE) for _ in range(8)]
    results = []
    for w in workers:
        out, _ = w.communicate(timeout=120)
        assert w.returncode == 0
        results.append(json.loads(out))
    every = [n for r in results for n in r]
    assert len(every) == 8 * per
    assert len(set(every)) == len(every)
    for r in results:
        assert all(a < b for a, b in itertools.pairwise(r))


def test_threads_share_one_client(unlocked: agent.AgentInfo) -> None:
    got: list[list[int]] = [[] for _ in range(8)]
    with agent.connect() as client:

        def work(i: int) -> None:
            got[i] = [client.next_nonce("spot") for _ in range(100)]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    every = [n for g in got for n in g]
    assert len(set(every)) == 800
    assert all(all(a < b for a, b in itertools.pairwise(g)) for g in got)


def test_nonces_batch_and_counts(unlocked: agent.AgentInfo) -> None:
    from botvault import InvalidInputError

    with agent.connect() as client:
        batch = client.nonces("spot", 5)
        assert batch == list(range(batch[0], batch[0] + 5))
        assert client.next_nonce("spot") > batch[-1]
        for bad in (0, -1, 10**9):
            with pytest.raises(InvalidInputError):
                client.nonces("spot", bad)
        with pytest.raises(NotFoundError):
            client.next_nonce("nope")


# -- reads: list, get, data_key, and writes made by other processes ------------------------------


def test_list_get_and_credentials_redacted(unlocked: agent.AgentInfo, keys: Keys) -> None:
    with agent.connect() as client:
        listed = client.list()
        assert [e["name"] for e in listed] == ["futures", "spot"]
        assert "api_secret" not in json.dumps(listed)
        assert all(keys.secrets[e["name"]] not in json.dumps(listed) for e in listed)
        cred = client.credentials("spot")
    assert cred.api_key == "PUBSPOTKEY" and cred.exchange == "kraken-spot"
    assert cred.api_secret.reveal() == keys.secrets["spot"]
    assert keys.secrets["spot"] not in repr(cred) and keys.secrets["spot"] not in str(cred)
    assert cred.general.value == "full" and cred.withdrawal.value == "none"


def test_credentials_are_the_librarys_entry(unlocked: agent.AgentInfo, keys: Keys) -> None:
    """One read model: what the agent hands out is the same Entry the library reads."""
    with agent.connect() as client:
        cred = client.credentials("spot")
    with Vault.open_with_key(keys.path, keys.data_key) as opened:
        stored = opened.get("spot")
    assert type(cred) is Entry
    assert cred == stored  # every field, the secret included (entry_id is not compared)
    assert cred.fingerprint == stored.fingerprint


def test_agent_sees_writes_made_by_another_process(unlocked: agent.AgentInfo, keys: Keys) -> None:
    from tests.agent_support import b64secret

    with agent.connect() as client:
        generation = client.status()["generation"]
        assert client.data_key() == keys.data_key
        # What `botvault add` does while unlocked: open with the agent's key, save.
        with Vault.open_with_key(keys.path, client.data_key()) as v:
            v.add("later", exchange="kraken-spot", api_key="PUBLATER", api_secret=b64secret(),
                  general="read-only", withdrawal="none")
        assert client.status()["generation"] == generation + 1
        assert "later" in [e["name"] for e in client.list()]
        assert client.credentials("later").general.value == "read-only"


def test_unknown_op_is_an_error_and_closes(unlocked: agent.AgentInfo) -> None:
    with raw_connect(unlocked.socket_path) as s:
        payload = b'{"op":"format_disk"}'
        s.sendall(struct.pack(">I", len(payload)) + payload)
        data = read_until_eof(s)
    response = json.loads(data[4:])
    assert response["ok"] is False and response["error"]["type"] == "InvalidInputError"


def test_kdf_floor_vault_opens_in_agent_but_cheapest_does_not(tmp_path: Path) -> None:
    """The test-only KDF switch is per process: the agent subprocess refuses such a file."""
    from botvault import FormatError
    from botvault._testing import CHEAPEST_TEST_ONLY

    path = tmp_path / "cheap" / "vault.bv"
    with Vault.create(path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY) as v:
        key = v.hand_out_data_key()
    with pytest.raises(FormatError):
        launcher.start_agent(path, key, ttl=5, idle=5, allow_withdrawal=False)
    assert AGENT_KDF.memory_kib == 19 * 1024


def test_launcher_gives_up_on_an_agent_that_never_answers(monkeypatch: pytest.MonkeyPatch,
                                                          keys: Keys) -> None:
    from botvault import VaultError

    real = subprocess.Popen
    started: list[subprocess.Popen[bytes]] = []

    def silent(args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        process = real([sys.executable, "-c", "import time; time.sleep(30)"],
                       **kw)  # type: ignore[call-overload]
        started.append(process)
        return process  # type: ignore[no-any-return]

    monkeypatch.setattr(subprocess, "Popen", silent)
    began = time.monotonic()
    with pytest.raises(VaultError, match="did not become ready"):
        launcher.start_agent(keys.path, keys.data_key, ttl=5, idle=5, allow_withdrawal=False,
                             timeout=0.5)
    assert time.monotonic() - began < 5
    assert started[0].poll() is not None  # killed, not left behind


@pytest.mark.parametrize(("ttl", "idle"), [(0, 5), (5, 0), (-1, 5), (float("inf"), 5),
                                           (5, float("nan"))])
def test_launcher_refuses_bad_limits(keys: Keys, ttl: float, idle: float) -> None:
    from botvault import InvalidInputError

    with pytest.raises(InvalidInputError):
        launcher.start_agent(keys.path, keys.data_key, ttl=ttl, idle=idle,
                             allow_withdrawal=False)


@pytest.mark.slow
def test_agent_bench_quick_runs_to_the_end() -> None:
    """The benchmark stays runnable (no timing assertions: figures depend on the machine)."""
    script = Path(__file__).resolve().parent.parent / "bench" / "bench_agent.py"
    result = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True,
                            text=True, timeout=300, check=False, cwd=script.parent.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "## botvault agent benchmark summary" in result.stdout


def test_status_survives_a_moved_vault_while_reads_report_it(unlocked: agent.AgentInfo,
                                                             keys: Keys) -> None:
    moved = keys.path.with_name("moved.bv")
    os.rename(keys.path, moved)
    try:
        with agent.connect() as client:
            status = client.status()
            assert status["unlocked"] is True and "no vault" in status["vault_problem"]
            with pytest.raises(NotFoundError):
                client.list()
    finally:
        os.rename(moved, keys.path)
    with agent.connect() as client:
        assert client.status()["vault_problem"] is None
        assert len(client.list()) == 2


def test_simultaneous_unlocks_start_exactly_one_agent(keys: Keys) -> None:
    outcomes: list[agent.AgentInfo | BaseException] = []

    def attempt() -> None:
        try:
            outcomes.append(start(keys))
        except BaseException as exc:  # collected, asserted below
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [o for o in outcomes if isinstance(o, agent.AgentInfo)]
    try:
        assert len(started) == 1
        assert all(isinstance(o, AlreadyExistsError) for o in outcomes if o not in started)
        with agent.connect() as client:
            assert client.status()["pid"] == started[0].pid
    finally:
        for info in started:
            stop(info)

"""The gateway's listening socket (issue 17): handed over by systemd so the port is never free
for a squatter, connections capped with the open-files limit raised to match, accept errors
reported once per interval. Real sockets inherited by a real subprocess."""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from botvault.gateway.listening import AcceptErrors, open_files_for

from .agent_support import Keys, make_vault, private_runtime_dir, running
from .gateway_stack import ENTRIES, gateway_stack, real_api_key, stop_gateway
from .kraken_server import StrictKraken, http_json

# What systemd does for a socket-activated service: the socket on descriptor 3,
# LISTEN_PID (this very process, after exec) and LISTEN_FDS set.
_ACTIVATE = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="gateway")
os.execv(sys.executable, [sys.executable, "-m", "botvault", "gateway", *sys.argv[2:]])
"""


@pytest.fixture
def keys(vault_path: Path) -> Iterator[Keys]:
    private_runtime_dir()
    made = make_vault(vault_path, ENTRIES)
    with running(made):
        yield made


def _activated(sock: socket.socket, keys: Keys, kraken: StrictKraken
               ) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _ACTIVATE, str(sock.fileno()), "--vault", str(keys.path),
         "--spot-url", kraken.url, "--futures-url", kraken.url],
        pass_fds=(sock.fileno(),), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    assert "listening on " in line, proc.stderr.read() if proc.stderr else line
    return proc, line.strip().rsplit(" ", 1)[1]


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except FileNotFoundError:  # closed since it was listed
        return ""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serves_on_the_socket_systemd_hands_over_and_the_port_stays_held(keys: Keys) -> None:
    with StrictKraken(tier="pro") as kraken, socket.socket() as sock:
        kraken.add_key(real_api_key("spot"), keys.secrets["spot"], "spot")
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        for _ in range(2):  # a restart: the same socket, never closed in between
            proc, url = _activated(sock, keys, kraken)
            try:
                assert url == f"http://127.0.0.1:{port}"  # systemd's socket, not --listen's
                assert http_json(url, "GET", "/0/public/Time")[0] == 200
                # Close-on-exec, and the variables gone: no child takes the socket as its own.
                flags = int(Path(f"/proc/{proc.pid}/fdinfo/3").read_text().split(
                    "flags:")[1].split()[0], 8)
                assert flags & 0o2000000  # O_CLOEXEC
                (child,) = _children(proc.pid)  # the audit writer
                assert b"LISTEN_PID" not in Path(f"/proc/{child}/environ").read_bytes()
                assert not any(_link(f"/proc/{child}/fd/{fd}").startswith("socket:")
                               for fd in os.listdir(f"/proc/{child}/fd"))
            finally:
                assert stop_gateway(proc) == 0
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
            # While the gateway is down, the port is still held: nobody else can take it.
            with socket.socket() as squatter, pytest.raises(OSError, match="in use"):
                squatter.bind(("127.0.0.1", port))


def test_socket_activation_variables_for_another_process_are_ignored_and_removed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from botvault.gateway.listening import inherited_socket

    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))  # meant for a parent, say
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert inherited_socket() is None
    assert "LISTEN_PID" not in os.environ and "LISTEN_FDS" not in os.environ


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_connections_are_capped_and_the_open_files_limit_fits_the_cap(vault_path: Path
                                                                      ) -> None:
    with gateway_stack(vault_path, gateway_args=("--max-connections", "20")) as stack:
        limits = Path(f"/proc/{stack.gateway.pid}/limits").read_text()
        soft = next(line.split()[3] for line in limits.splitlines()
                    if line.startswith("Max open files"))
        assert soft == "unlimited" or int(soft) >= 20 + 256
        host, port = stack.url.removeprefix("http://").rsplit(":", 1)
        idle = [socket.create_connection((host, int(port))) for _ in range(40)]
        try:
            time.sleep(0.5)
            closed = 0
            for conn in idle:  # the ones over the cap are closed at once
                conn.setblocking(False)
                try:
                    closed += conn.recv(1) == b""
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    closed += 1
            assert closed == 20
        finally:
            for conn in idle:
                conn.close()
        time.sleep(0.3)
        assert http_json(stack.url, "GET", "/0/public/Time")[0] == 200


def test_open_files_limit_is_raised_to_what_the_cap_needs() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        wanted = min(hard, soft + 300) if hard != resource.RLIM_INFINITY else soft + 300
        cap = open_files_for(wanted - 256)
        assert cap == wanted - 256 and resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= wanted
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_accept_errors_are_reported_once_per_interval(capfd: pytest.CaptureFixture[str]
                                                      ) -> None:
    loop = asyncio.new_event_loop()
    try:
        errors = AcceptErrors(loop, every=3600)
        for _ in range(5000):
            errors.handle(loop, {"message": "socket.accept() out of system resource",
                                 "exception": OSError(errno.EMFILE, "Too many open files")})
    finally:
        loop.close()
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Too many open files" in err


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_gateway_out_of_descriptors_keeps_serving_and_says_so_once(
        vault_path: Path, loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its open-files limit far below its cap: accept() fails, the bots already connected
    # go on, and (asyncio's loop) stderr gets a count, not a line per attempt. uvloop's
    # libuv closes a connection it cannot take a descriptor for without telling the loop:
    # there the gateway goes on serving and says nothing.
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv("BOTVAULT_GATEWAY_LOOP", loop)
    with gateway_stack(vault_path) as stack:
        conn_url = stack.url
        prlimit = shutil.which("prlimit")
        if prlimit is None:
            pytest.skip("needs prlimit (util-linux)")
        limits = Path(f"/proc/{stack.gateway.pid}/limits").read_text()
        soft = next(line.split()[3] for line in limits.splitlines()
                    if line.startswith("Max open files"))
        subprocess.run([prlimit, f"--pid={stack.gateway.pid}", "--nofile=40:"], check=True)
        host, port = conn_url.removeprefix("http://").rsplit(":", 1)
        held = []
        try:
            for _ in range(200):
                held.append(socket.create_connection((host, int(port))))
            time.sleep(1.5)
        finally:
            for conn in held:
                conn.close()
        time.sleep(1.2)  # asyncio pauses accepting for a second after a failure
        assert http_json(conn_url, "GET", "/0/public/Time")[0] == 200
        # Descriptors enough again to stop in order (the audit writer, the agent's links).
        subprocess.run([prlimit, f"--pid={stack.gateway.pid}", f"--nofile={soft}:"],
                       check=True)
        stack.gateway.send_signal(signal.SIGTERM)
        stack.gateway.wait(15)
        err = stack.gateway.stderr.read() if stack.gateway.stderr else ""
        assert 1 <= err.count("could not be accepted") <= 2 if loop == "asyncio" else \
            "Traceback" not in err, err

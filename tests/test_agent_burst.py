"""Busy is not locked: a burst of clients reaches the real agent without one error, and a
client over a limit waits or hears "busy" (exit 13), never "locked"."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from botvault.agent import connect, socket_location
from botvault.errors import EXIT_CODES, BusyError, LockedError

from .agent_support import make_vault, running

BURST = 200


def _burst(vault_path: Path, calls: int) -> list[BaseException]:
    """BURST threads of this process connect at once, each with its own connection, and
    make `calls` calls each while all the connections stay open."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(BURST)
    hold = threading.Barrier(BURST)

    def client() -> None:
        try:
            barrier.wait()
            with connect(vault_path) as agent:
                for _ in range(calls):
                    agent.status()
                hold.wait(60)  # every connection open at once
                agent.status()
        except BaseException as exc:  # counted: the test is that there are none
            errors.append(exc)
            hold.abort()

    threads = [threading.Thread(target=client) for _ in range(BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


@pytest.mark.slow
def test_a_burst_of_clients_connecting_at_once_gets_no_error(vault_path: Path) -> None:
    keys = make_vault(vault_path)
    with running(keys):
        errors = _burst(vault_path, calls=3)
    assert errors == []


@pytest.mark.slow
def test_a_burst_of_processes_gets_no_error(vault_path: Path) -> None:
    # systemd starting many bots together: separate processes, one connection each.
    keys = make_vault(vault_path)
    code = ("import sys; from botvault.agent import connect\n"
            "with connect(sys.argv[1]) as a: a.status()\n")
    with running(keys):
        procs = [subprocess.Popen([sys.executable, "-c", code, str(vault_path)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(60)]
        results = [(p.wait(120), p.stderr.read() if p.stderr else "") for p in procs]
        for p in procs:
            if p.stderr:
                p.stderr.close()
    assert [r for r in results if r[0] != 0] == []


def _fill(path: Path, held: list[socket.socket]) -> None:
    for _ in range(64):  # more than the queue holds (the kernel's backlog + 1)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        held.append(sock)
        sock.settimeout(0.2)
        socket_location.connect_when_free(sock, path, 0.2)


def test_a_full_listen_queue_is_busy_not_locked(tmp_path: Path) -> None:
    # A listener that never accepts, with a queue of one: once it is full, connect fails at
    # once with EAGAIN. The client waits for it, then says "busy" (exit 13).
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)
    held: list[socket.socket] = []
    try:
        with pytest.raises(BusyError) as info:
            _fill(path, held)
        assert not isinstance(info.value, LockedError)
        assert "busy" in str(info.value) and info.value.exit_code == 13
        assert "busy" in EXIT_CODES[13]
        assert info.value.hint and "nothing is locked" in info.value.hint
    finally:
        for sock in held:
            sock.close()
        listener.close()

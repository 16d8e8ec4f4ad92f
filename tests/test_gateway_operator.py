"""Issue 16, point 9: what the gateway's operator sees. A taken port is one error line naming
the address; Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it) stops it
with no traceback and the audit lines received written; the agent going away and coming back
is said once each on stderr, and those refusals' audit lines name the grant. All real: the
`botvault gateway` process, the real agent, the strict Kraken stand-in."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from botvault import agent
from botvault.audit import read_audit

from .agent_support import eventually, make_vault, running, start, stop
from .gateway_stack import gateway_stack
from .kraken_server import StrictKraken
from .test_gateway_e2e import spot_call


def _gateway(vault: Path, listen: str, kraken_url: str) -> subprocess.Popen[str]:
    # Its own session: SIGINT to its process group reaches it and its audit child, as
    # Ctrl-C at a terminal does.
    return subprocess.Popen(
        [sys.executable, "-m", "botvault", "gateway", "--vault", str(vault), "--listen", listen,
         "--spot-url", kraken_url, "--futures-url", kraken_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_a_taken_port_is_one_error_line_naming_the_address(tmp_path: Path) -> None:
    keys = make_vault(tmp_path / "v.bv")
    with running(keys), socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _gateway(keys.path, f"127.0.0.1:{port}", "http://127.0.0.1:9")
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 9, err
    lines = err.splitlines()
    assert lines[0] == (f"botvault: error: cannot listen on 127.0.0.1:{port}: the address is "
                        "already in use")
    assert len(lines) == 2 and lines[1].startswith("hint: another program")
    assert "--listen" in lines[1]
    for noise in ("Unclosed", "vault on disk", "Traceback"):
        assert noise not in err
    assert "listening" not in out


def test_ctrl_c_stops_it_without_a_traceback_and_the_audit_lines_are_written(
        tmp_path: Path) -> None:
    keys = make_vault(tmp_path / "v.bv", {"spot": {"exchange": "kraken-spot",
                                                  "general": "full", "withdrawal": "none"}})
    from botvault import Vault
    from botvault.grant_ops import add_grant

    from .gateway_stack import Credential, real_api_key

    with Vault.open_with_key(keys.path, keys.data_key) as vault:
        grant = add_grant(vault, "bot", entry="spot", general="full", withdrawal="none")
    bot = Credential(grant.api_key, grant.api_secret.reveal())
    with StrictKraken() as kraken, running(keys):
        kraken.add_key(real_api_key("spot"), keys.secrets["spot"], "spot", general="full",
                       withdrawal="none")
        proc = _gateway(keys.path, "127.0.0.1:0", kraken.url)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
            for _ in range(5):
                assert spot_call(url, bot, "Balance")[0] == 200
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C at its terminal does
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    records = list(read_audit(keys.path))
    assert [(r["grant"], r["outcome"]) for r in records] == [("bot", "forwarded")] * 5


def _answers(vault: Path) -> bool:
    from botvault.errors import VaultError

    try:
        with agent.connect(vault) as client:
            client.status()
    except (VaultError, OSError):
        return False
    return True


def _stderr_until(proc: subprocess.Popen[str], text: str, timeout: float = 10.0) -> str:
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen and time.monotonic() < deadline:
        if select.select([proc.stderr], [], [], 0.2)[0]:
            chunk = os.read(proc.stderr.fileno(), 4096).decode()
            if not chunk:
                break
            seen += chunk
    return seen


def test_the_agent_going_away_and_coming_back_is_said_once_each(vault_path: Path) -> None:
    with gateway_stack(vault_path) as stack:
        bot = stack.grant("bot", "spot")
        assert spot_call(stack.url, bot, "Balance")[1]["error"] == []
        with agent.connect(stack.keys.path) as client:
            client.lock()  # `botvault lock` while bots run
        assert eventually(lambda: not _answers(stack.keys.path))
        for _ in range(3):
            status, doc = spot_call(stack.url, bot, "Balance")
            assert (status, doc["error"]) == (503, ["EService:Unavailable"])
        said = _stderr_until(stack.gateway, "locked or unreachable")
        time.sleep(0.3)
        said += _stderr_until(stack.gateway, "\0", timeout=0.5)
        assert said.count("the agent is locked or unreachable") == 1, said
        info = start(stack.keys)  # `botvault unlock` again
        try:
            assert spot_call(stack.url, bot, "Balance")[1]["error"] == []
            again = _stderr_until(stack.gateway, "answers again")
            assert again.count("the agent answers again") == 1, again
        finally:
            stop(info)
        from .gateway_stack import stop_gateway

        assert stop_gateway(stack.gateway) == 0
        records = [(r["grant"], r.get("entry"), r["outcome"])
                   for r in read_audit(stack.keys.path)]
    # The refusals (nothing sent) are counted under the grant seen before the agent went.
    assert records == [("bot", "spot", "forwarded"), ("bot", "spot", "forwarded"),
                       ("bot", None, "agent-unavailable x3")]

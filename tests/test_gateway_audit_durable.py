"""The gateway's audit lines cannot be pushed out or skipped (issue 17, must hold 4): a line
is durable before a request leaves, a kill leaves `sent, outcome unknown`, floods are
summarized, and a line that cannot be written stops forwarding. Real agent, real gateway
process, the strict stand-in; a real full disk (a small tmpfs, as root)."""

from __future__ import annotations

import contextlib
import http.client
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from botvault.audit import UNKNOWN_OUTCOME, read_audit
from botvault.exchanges.kraken import sign_spot

from .agent_support import eventually
from .gateway_stack import (
    Credential,
    Stack,
    gateway_stack,
    real_api_key,
    start_gateway,
    stop_gateway,
)
from .kraken_server import http_json
from .small_disk import small_tmpfs

ADD = "/0/private/AddOrder"


def _order(url: str, cred: Credential, **fields: str) -> tuple[int, Any]:
    nonce = time.time_ns() // 1_000_000
    body = urlencode({"nonce": nonce, "pair": "XBTUSD", "volume": "0.01", **fields})
    return http_json(url, "POST", ADD, body, {
        "API-Key": cred.api_key, "API-Sign": sign_spot(cred.api_secret, ADD, nonce, body),
        "Content-Type": "application/x-www-form-urlencoded"})


def _restart(stack: Stack) -> None:
    """A new gateway for the stack (whose teardown stops it cleanly)."""
    old = stack.gateway
    stop_gateway(old)
    for pipe in (old.stdout, old.stderr):
        if pipe is not None:
            pipe.close()
    stack.gateway, _ = start_gateway(stack.keys.path, stack.kraken.url)


def test_a_kill_mid_flight_leaves_sent_outcome_unknown(vault_path: Path) -> None:
    with gateway_stack(vault_path, latency=30.0) as stack:
        bot = stack.grant("bot", "spot")

        def send() -> None:
            with contextlib.suppress(OSError, http.client.HTTPException):  # it is killed
                _order(stack.url, bot)

        threading.Thread(target=send, daemon=True).start()
        # At the exchange (it holds the answer back), when the gateway is killed.
        assert eventually(lambda: stack.kraken.max_in_flight(real_api_key("spot")) == 1, 20)
        stack.gateway.send_signal(signal.SIGKILL)
        stack.gateway.wait(10)
        records = read_audit(stack.keys.path)
        assert [(r["grant"], r["endpoint"], r["outcome"]) for r in records] == [
            ("bot", ADD, UNKNOWN_OUTCOME)]
        _restart(stack)


@pytest.mark.slow
def test_no_flood_of_refused_requests_pushes_a_forwarded_line_out(vault_path: Path) -> None:
    with gateway_stack(vault_path) as stack:
        bot = stack.grant("bot", "spot")
        assert _order(stack.url, bot)[1]["error"] == []
        conn = http.client.HTTPConnection(urlsplit(stack.url).netloc, timeout=30)
        bad = {"API-Key": bot.api_key, "API-Sign": "c2lnbmF0dXJl"}
        # Unauthenticated, unknown paths, badly signed: beyond 200 refusals a second the
        # gateway makes each wait (a flood slows to one a second per connection), so this
        # one connection sends about 200 a second.
        for n in range(6_000):
            if n % 2:
                conn.request("GET", "/x")
            else:
                conn.request("POST", "/0/private/Balance", f"nonce={n}", bad)
            conn.getresponse().read()
        conn.close()
        assert stop_gateway(stack.gateway) == 0  # writes the last summaries
        records = read_audit(stack.keys.path)
        assert [(r["grant"], r["endpoint"], r["outcome"]) for r in records
                if r.get("endpoint")] == [("bot", ADD, "forwarded")]
        counted: dict[str, int] = {}
        for r in records:  # one summary line per minute and reason
            if r.get("count"):
                reason = r["outcome"].split(" x")[0]
                counted[reason] = counted.get(reason, 0) + r["count"]
        assert counted == {"unknown-path": 3000, "invalid-signature": 3000}
        size = sum(p.stat().st_size for p in vault_path.parent.glob("*.audit.jsonl*"))
        assert size < 4096  # a few lines, whatever the flood


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a disk that really fills up (mounting needs root)."""
    with small_tmpfs(tmp_path / "small", "2m", lazy_unmount=True) as mount:
        yield mount


def _fill(directory: Path) -> None:
    with contextlib.suppress(OSError), open(directory / "filler", "wb", buffering=0) as f:
        while True:
            f.write(b"x" * 512)


@pytest.mark.parametrize("mode", ["refuse", "continue"])
def test_a_full_disk_stops_forwarding_unless_told_to_continue(small_fs: Path,
                                                             mode: str) -> None:
    store = small_fs / "store"
    store.mkdir(mode=0o700)
    args = ("--audit-failure", mode) if mode == "continue" else ()
    with gateway_stack(store / "vault.bv", gateway_args=args) as stack:
        bot = stack.grant("bot", "spot")
        assert _order(stack.url, bot)[1]["error"] == []  # the nonce state is in place
        _fill(small_fs)
        answers = [_order(stack.url, bot) for _ in range(40)]  # the log's last page fills
        statuses = {status for status, _ in answers}
        forwarded = sum(1 for _, doc in answers if doc["error"] == [])
        if mode == "refuse":
            assert statuses == {200, 503} and (503, {"error": ["EService:Unavailable"],
                                                     "result": {}}) in answers
            # Every order the exchange has, the log has: nothing went out unaudited.
            assert stack.kraken.accepted() == 1 + forwarded
            assert len(read_audit(stack.keys.path)) == 1 + forwarded
        else:
            assert statuses == {200} and stack.kraken.accepted() == 41
        (small_fs / "filler").unlink()
        assert _order(stack.url, bot)[1]["error"] == []  # room again: forwarding goes on
        stop_gateway(stack.gateway)
        err = stack.gateway.stderr.read() if stack.gateway.stderr else ""
        assert "audit" in err and ("refusing to forward" if mode == "refuse" else
                                   "forwarding unaudited") in err
        assert err.count("could not be written") == 1  # said once, not once per request
        _restart(stack)


def test_the_audit_child_never_acknowledges_a_line_it_refused(tmp_path: Path) -> None:
    # A record the log refuses (a field outside FIELDS) that asked for an acknowledgement
    # gets `fail`, not `ok`: the gateway must not send a request whose line is missing.
    import subprocess
    import sys

    vault = tmp_path / "v.bv"
    child = subprocess.Popen([sys.executable, "-m", "botvault.gateway.audit_writer",
                              str(vault), "90.0", str(1 << 20)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    good = b'{"phase":"sent","seq":"a-1","grant":"g","ack":true}\n'
    bad = b'{"phase":"sent","seq":"a-2","body":"nonce=1&secret","ack":true}\n'
    out, _ = child.communicate(good + bad, timeout=60)
    assert out.decode().splitlines() == ["ok a-1", "fail a-2 refused"]
    assert [r["seq"] for r in read_audit(vault)] == ["a-1"]


def test_a_kept_audit_log_rotated_by_another_writer_is_opened_again(tmp_path: Path) -> None:
    # The audit child keeps the log open between batches; when another writer rotates it,
    # the next batch goes to the new current file, not to the segment.
    from botvault.audit import AuditAppender, append_lines, audit_path, segments

    vault = tmp_path / "v.bv"
    kept = AuditAppender(vault, max_bytes=1 << 20)
    try:
        kept.append([{"phase": "sent", "seq": "k-1"}])
        # Another writer with a small segment size rotates the file under the kept one.
        append_lines(vault, [{"phase": "sent", "seq": "o-1", "grant": "x" * 200}],
                     max_bytes=100)
        kept.append([{"phase": "sent", "seq": "k-2"}])
    finally:
        kept.close()
    current = audit_path(vault).read_text()
    assert '"k-2"' in current and '"k-1"' not in current
    assert len(segments(vault)) == 1

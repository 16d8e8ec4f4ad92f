"""One rate counter per key across processes: the gateway and the in-process integrations
count a key's requests in one machine-wide state, so together they stay under Kraken's."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from botvault.exchanges.kraken import sign_spot
from botvault.rate_limits import FileRateState, Governor, MemoryRateState
from botvault.request_lock import requests_dir

from .gateway_stack import Credential, gateway_stack
from .kraken_server import http_json


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_two_governors_on_one_file_state_share_the_counter(tmp_path: Path) -> None:
    clock = Clock()
    vault = tmp_path / "v.bv"
    one = Governor("pro", clock=clock, state=FileRateState(vault))
    two = Governor("pro", clock=clock, state=FileRateState(vault))
    sent = [g.admit("spot", "k" * 32, "/0/private/Balance") for g in [one, two] * 10]
    assert sent[:19] == [0.0] * 19 and sent[19] > 0  # 20 at most, between the two
    assert two.admit("spot", "b" * 32, "/0/private/Balance") == 0  # another key: its own
    # Separate memory states would each have let 20 through.
    apart = [Governor("pro", clock=clock, state=MemoryRateState()) for _ in range(2)]
    assert all(g.admit("spot", "k" * 32, "/0/private/Balance") == 0 for g in apart)
    rate_file = requests_dir(vault) / f"{'k' * 32}.rate"
    assert stat.S_IMODE(os.stat(rate_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(rate_file.parent).st_mode) == 0o700


def test_a_kept_rate_file_that_is_replaced_is_opened_again(tmp_path: Path) -> None:
    # Each key's file is kept open; one removed or replaced under it is not written to in
    # vain: the next update opens the file the path names, which the others use.
    clock = Clock()
    vault = tmp_path / "v.bv"
    kept = Governor("pro", clock=clock, state=FileRateState(vault))
    assert [kept.admit("spot", "r" * 32, "/0/private/Balance") for _ in range(19)] == [0.0] * 19
    rate_file = requests_dir(vault) / f"{'r' * 32}.rate"
    rate_file.unlink()  # a fresh counter: an operator's reset, say
    other = Governor("pro", clock=clock, state=FileRateState(vault))
    assert [other.admit("spot", "r" * 32, "/0/private/Balance") for _ in range(18)] == \
        [0.0] * 18
    assert kept.admit("spot", "r" * 32, "/0/private/Balance") == 0  # the 19th, in the new file
    assert other.admit("spot", "r" * 32, "/0/private/Balance") > 0  # and it counted there


def test_the_state_is_shared_with_another_process(tmp_path: Path) -> None:
    vault = tmp_path / "v.bv"
    code = ("import sys; from botvault.rate_limits import FileRateState, Governor\n"
            "g = Governor('pro', state=FileRateState(sys.argv[1]))\n"
            "print(sum(g.admit('spot', 'c' * 32, '/0/private/Balance') == 0 "
            "for _ in range(15)))\n")
    out = subprocess.run([sys.executable, "-c", code, str(vault)], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert out.strip() == "15"
    here = Governor("pro", state=FileRateState(vault))
    admitted = sum(here.admit("spot", "c" * 32, "/0/private/Balance") == 0 for _ in range(15))
    assert admitted < 15 - 2  # the other process's 15 are counted here (a few decayed)


def test_batchorder_is_counted_at_nine_plus_its_size() -> None:
    governor = Governor("pro", clock=Clock())
    batch = urlencode({"json": '{"batchOrder": [' + ",".join(["{}"] * 41) + "]}"})
    waits = [governor.admit("futures", "f" * 32, "/api/v3/batchorder", batch)
             for _ in range(10)]
    assert waits[:9] == [0.0] * 9 and waits[9] > 0  # 10 x 50 units would reach 500


def _balance(url: str, cred: Credential, nonce: int) -> list[str]:
    path = "/0/private/Balance"
    body = urlencode({"nonce": nonce})
    _, doc = http_json(url, "POST", path, body, {
        "API-Key": cred.api_key, "API-Sign": sign_spot(cred.api_secret, path, nonce, body),
        "Content-Type": "application/x-www-form-urlencoded"})
    return list(doc["error"])


@pytest.mark.slow
def test_gateway_bots_and_an_in_process_bot_share_the_keys_counter(
        vault_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from botvault import agent
    from botvault.integrations.agent_signed import krakenex_api

    monkeypatch.setenv("BOTVAULT_KRAKEN_TIER", "pro")  # the in-process bot's tier: 20, 1/s
    entries = {"spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}}
    with gateway_stack(vault_path, entries=entries, tier="pro",
                       gateway_args=("--max-wait", "120")) as stack:
        errors: list[list[str]] = []
        lock = threading.Lock()

        def gateway_bot(cred: Credential) -> None:
            nonce = 0
            for _ in range(4):
                # A recent clock nonce (µs), once each: the agent refuses replays and stale ones.
                nonce = max(nonce + 1, time.time_ns() // 1000)
                got = _balance(stack.url, cred, nonce)
                with lock:
                    errors.append(got)

        def in_process_bot() -> None:
            api = krakenex_api("spot", agent.connect())
            api.uri = stack.kraken.url  # straight to the exchange, signed by the agent
            for _ in range(6):
                got = api.query_private("Balance")
                with lock:
                    errors.append(list(got.get("error", [])))
            api.close()

        creds = [stack.grant(f"bot{i}", "spot") for i in range(6)]
        threads = [threading.Thread(target=gateway_bot, args=(c,)) for c in creds]
        threads.append(threading.Thread(target=in_process_bot))
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert len(errors) == 6 * 4 + 6  # 30 calls: 10 beyond the burst of 20
        assert [e for e in errors if e] == []
        assert stack.kraken.rejected() == {}
        assert stack.kraken.accepted() == 30

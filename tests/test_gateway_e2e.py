"""The gateway end to end: `botvault gateway` as a real process, the real agent, grants in the
vault, and the strict Kraken stand-in upstream."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from botvault import Vault
from botvault.audit import read_audit
from botvault.exchanges.kraken import sign_futures, sign_spot
from botvault.grant_ops import revoke_grant

from .gateway_stack import Credential, Stack, ccxt_futures, gateway_stack, tally_bots
from .kraken_server import http_json


@pytest.fixture
def stack(vault_path: Path) -> Iterator[Stack]:
    with gateway_stack(vault_path) as s:
        yield s


_http = http_json  # one plain-HTTP helper, beside the stand-in


def fresh_nonce() -> int:
    """A nonce from the clock, in microseconds (the agent reads the unit from its size and
    accepts a grant-signed request once, while its nonce is recent)."""
    return time.time_ns() // 1000


def spot_call(url: str, cred: Credential, method: str, nonce: int | None = None,
              **fields: str) -> tuple[int, Any]:
    path = f"/0/private/{method}"
    nonce = fresh_nonce() if nonce is None else nonce
    body = urlencode({"nonce": nonce, **fields})
    return _http(url, "POST", path, body, {
        "API-Key": cred.api_key, "API-Sign": sign_spot(cred.api_secret, path, nonce, body),
        "Content-Type": "application/x-www-form-urlencoded"})


def test_plain_http_through_the_real_agent(stack: Stack) -> None:
    bot = stack.grant("bot", "spot")
    for _ in range(3):  # the same bot nonce each time: the gateway puts the key's own in
        status, doc = spot_call(stack.url, bot, "Balance")
        assert (status, doc["error"]) == (200, [])
    # The websocket token is a private call like any other.
    status, doc = spot_call(stack.url, bot, "GetWebSocketsToken")
    assert doc["error"] == [] and doc["result"]["token"]
    fut = stack.grant("fbot", "fut")
    path = "/derivatives/api/v3/openorders"
    status, doc = _http(stack.url, "GET", path, headers={  # no Nonce, as ccxt sends
        "APIKey": fut.api_key, "Authent": sign_futures(fut.api_secret, path, "", "")})
    assert (status, doc["result"]) == (200, "success")
    assert stack.kraken.accepted() == 5 and stack.kraken.rejected() == {}


def test_refusals_from_the_real_agent_never_reach_the_exchange(stack: Stack) -> None:
    bot = stack.grant("bot", "spot")
    reader = stack.grant("reader", "spot", general="read-only")
    wrong = Credential(bot.api_key, reader.api_secret)
    assert spot_call(stack.url, wrong, "Balance")[1] == {
        "error": ["EAPI:Invalid signature"], "result": {}}
    assert spot_call(stack.url, reader, "AddOrder", pair="XBTUSD")[1]["error"] == [
        "EGeneral:Permission denied"]
    assert spot_call(stack.url, Credential("bvg_" + "A" * 52, bot.api_secret), "Balance",
                     )[1]["error"] == ["EAPI:Invalid key"]
    assert spot_call(stack.url, stack.real("spot"), "Balance")[1]["error"] == [
        "EAPI:Invalid key"]  # the real key is no grant: the gateway takes grants only
    assert spot_call(stack.url, bot, "Balance")[1]["error"] == []
    with Vault.open_with_key(stack.keys.path, stack.keys.data_key) as vault:
        revoke_grant(vault, "bot")
    # Effective at once: the agent checks the grant on every signature.
    assert spot_call(stack.url, bot, "Balance")[1]["error"] == ["EAPI:Invalid key"]
    assert stack.kraken.accepted() == 1 and stack.kraken.rejected() == {}


def test_every_request_is_audited_beside_the_vault(stack: Stack) -> None:
    bot = stack.grant("bot", "spot")
    spot_call(stack.url, bot, "AddOrder", pair="XBTUSD", volume="0.0777")
    spot_call(stack.url, Credential(bot.api_key, stack.real("spot").api_secret), "Balance")
    _http(stack.url, "GET", "/0/public/Time")
    from .gateway_stack import stop_gateway

    assert stop_gateway(stack.gateway) == 0  # flushes the audit writer
    records = list(read_audit(stack.keys.path))
    # A forwarded request has its own line; what sent nothing under a grant is counted.
    assert [tuple(r.get(k) for k in ("grant", "entry", "endpoint", "outcome",
                                     "upstream_status", "count")) for r in records] == [
        ("bot", "spot", "/0/private/AddOrder", "forwarded", 200, None),
        (None, None, None, "invalid-signature x1", None, 1),
        (None, None, None, "public x1", None, 1)]
    raw = (stack.keys.path.parent / (stack.keys.path.name + ".audit.jsonl")).read_text()
    for secret in (bot.api_secret, stack.real("spot").api_secret):
        assert secret not in raw
    assert "0.0777" not in raw and "XBTUSD" not in raw


def test_gateway_refuses_to_start_without_an_agent(tmp_path: Path) -> None:
    import subprocess
    import sys

    from .agent_support import make_vault

    keys = make_vault(tmp_path / "v.bv")
    result = subprocess.run([sys.executable, "-m", "botvault", "gateway", "--vault",
                             str(keys.path), "--listen", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 5
    assert result.stderr.startswith("botvault: error: ") and "listening" not in result.stdout


def test_gateway_listens_on_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from botvault.cli.main import app

    result = CliRunner().invoke(app, ["gateway", "--vault", str(tmp_path / "v.bv"),
                                      "--listen", "0.0.0.0:0"])
    assert result.exit_code == 2
    assert "loopback" in result.output and "--allow-remote" in result.output
    result = CliRunner().invoke(app, ["gateway", "--vault", str(tmp_path / "v.bv"),
                                      "--listen", "localhost:80"])
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["gateway", "--vault", str(tmp_path / "v.bv"),
                                      "--spot-url", "http://example.com"])
    assert result.exit_code == 2 and "https" in result.output


# -- real clients, unchanged but for their URL and credentials (must-hold 4) ----------------

def _bots(url: str, creds: list[Credential], count: int) -> list[dict[str, int]]:
    """The four clients in four processes at once, one credential each; their tallies."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-m", "tests.gateway_clients", client, url,
                               str(count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
             for client in ("ccxt", "sdk", "krakenex", "plain")]
    return tally_bots(procs, creds)


@pytest.mark.slow
def test_four_clients_600_requests_on_one_key_all_accepted_direct_loses_some(
        vault_path: Path) -> None:
    entries = {"spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"},
               "direct": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}}
    with gateway_stack(vault_path, entries=entries, latency=0.002) as stack:
        # Directly, with the real key and each client's default nonces: they collide.
        direct = _bots(stack.kraken.url, [stack.real("direct")] * 4, 150)
        direct_ok = sum(t.get("ok", 0) for t in direct)
        direct_rejected = dict(stack.kraken.rejected())
        accepted_before = stack.kraken.accepted()
        # Through the gateway, four grants (one per bot) on one real key.
        grants = [stack.grant(f"bot{i}", "spot") for i in range(4)]
        through = _bots(stack.url, grants, 150)
        assert through == [{"ok": 150}] * 4
        assert stack.kraken.accepted() - accepted_before == 600
        assert stack.kraken.rejected() == direct_rejected  # not one more at the server
        assert stack.kraken.max_in_flight(stack.real("spot").api_key) == 1
    print(f"direct: {direct_ok}/600 accepted, {direct_rejected}; "
          f"through the gateway: {sum(t['ok'] for t in through)}/600")
    assert direct_ok < 600
    assert direct_rejected.get("EAPI:Invalid nonce", 0) > 0


def test_ccxt_krakenfutures_and_sdk_futures_through_the_gateway(stack: Stack) -> None:
    pytest.importorskip("ccxt")
    kraken_futures = pytest.importorskip("kraken.futures")
    one, two = stack.grant("ccxt-fut", "fut"), stack.grant("sdk-fut", "fut")
    base = stack.url
    exchange = ccxt_futures(base, one)
    assert exchange.private_get_openpositions()["result"] == "success"
    sent = exchange.private_post_sendorder({"orderType": "lmt", "symbol": "PF_XBTUSD",
                                            "side": "buy", "size": 1, "limitPrice": 1000})
    assert sent["sendStatus"]["status"] == "placed"
    user = kraken_futures.User(two.api_key, two.api_secret, url=base)
    assert user.get_wallets()["result"] == "success"
    trade = kraken_futures.Trade(two.api_key, two.api_secret, url=base)
    placed = trade.create_order(orderType="lmt", side="buy", size=1, symbol="PF_XBTUSD",
                                limitPrice=1000)
    assert placed["result"] == "success"
    assert stack.kraken.accepted() == 4 and stack.kraken.rejected() == {}


def test_freqtrade_config_through_the_ccxt_config_path_freqtrade_uses(stack: Stack) -> None:
    """freqtrade builds its exchange as `getattr(ccxt, name)(ex_config)` where ex_config is
    `{"apiKey": exchange.key, "secret": exchange.secret, ...}` deep-merged with
    `exchange.ccxt_config` (freqtrade/exchange/exchange.py `_init_ccxt`)."""
    ccxt = pytest.importorskip("ccxt")
    cred = stack.grant("freqtrade", "spot")
    config = json.loads(json.dumps({"exchange": {  # the README's lines, as JSON
        "name": "kraken", "key": cred.api_key, "secret": cred.api_secret,
        "ccxt_config": {"urls": {"api": {"public": stack.url, "private": stack.url}}}}}))
    exchange_config = config["exchange"]
    ex_config = {"apiKey": exchange_config.get("key"), "secret": exchange_config.get("secret"),
                 "password": exchange_config.get("password"), "uid": exchange_config.get("uid", "")}
    ex_config = {**exchange_config["ccxt_config"], **ex_config}
    exchange = getattr(ccxt, exchange_config["name"].lower())(ex_config)
    balance = exchange.fetch_balance()  # ccxt's own Balance call, parsed by ccxt
    assert balance["info"] == {"error": [], "result": {"ZUSD": "1000.0000",
                                                       "XXBT": "1.0000000000"}}
    assert stack.kraken.accepted() == 1  # and ccxt's public market calls, passed through
    assert set(stack.kraken.rejected()) <= {"public"}


# -- containment: a bot under another uid (must-hold 5) --------------------------------------

_OTHER_UID_BOT = r"""
import json, os, socket, sys
from tests.gateway_clients import plain_calls
url, agent_socket, vault = sys.argv[1:]
key, secret = json.loads(sys.stdin.readline())  # never on argv
balance, order = plain_calls(url, key, secret)
traded = [bool(balance()), bool(order()), bool(order())]
def attempt(action):
    try:
        action()
    except OSError as exc:
        return type(exc).__name__
    return "allowed"
def connect_agent():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    os.chdir(os.path.dirname(agent_socket))  # a unix socket path may be too long to name
    s.connect(os.path.basename(agent_socket))
    s.sendall(b'{"op": "status"}')
    if not s.recv(1):
        raise ConnectionResetError("closed by the agent")
print(json.dumps({"traded": traded, "agent": attempt(connect_agent),
                  "vault": attempt(lambda: open(vault, "rb").read(1))}))
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or
                    shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_a_bot_under_another_uid_trades_but_reaches_neither_agent_nor_vault(
        stack: Stack) -> None:
    import subprocess
    import sys

    from botvault.agent import socket_path_for

    cred = stack.grant("elsewhere", "spot")
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    agent_socket = socket_path_for(stack.keys.path)
    assert agent_socket.exists()
    result = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
         "-c", _OTHER_UID_BOT, stack.url, str(agent_socket), str(stack.keys.path)],
        input=json.dumps([cred.api_key, cred.api_secret]) + "\n",
        capture_output=True, text=True, timeout=120, check=False,
        cwd=Path(__file__).resolve().parent.parent, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["traded"] == [True, True, True]
    assert seen["agent"] in ("PermissionError", "ConnectionResetError", "BrokenPipeError")
    assert seen["vault"] == "PermissionError"
    assert stack.kraken.accepted() == 3


def _memory_of(pid: int) -> Iterator[bytes]:
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                yield mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue  # [vvar] and the like cannot be read


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs /proc")
def test_the_gateway_process_holds_no_secret(stack: Stack) -> None:
    import base64

    bot = stack.grant("bot", "spot")
    for _ in range(3):
        assert spot_call(stack.url, bot, "Balance")[1]["error"] == []
    real = stack.real("spot").api_secret
    needles = [real.encode(), base64.b64decode(real), bot.api_secret.encode(),
               base64.b64decode(bot.api_secret)]
    seen_public_key = False
    for chunk in _memory_of(stack.gateway.pid):
        seen_public_key = seen_public_key or bot.api_key.encode() in chunk
        for needle in needles:
            assert needle not in chunk
    assert seen_public_key  # the scan reads the heap: the grant's api key is there
    for name in ("cmdline", "environ"):
        data = Path(f"/proc/{stack.gateway.pid}/{name}").read_bytes()
        assert not any(n in data for n in needles)


def test_another_address_only_over_tls_and_with_a_warning(stack: Stack) -> None:
    import ssl

    from botvault.gateway.tls_init import tls_init

    from .gateway_stack import start_gateway, stop_gateway

    made = tls_init(stack.keys.path, ["127.0.0.1"])
    proc, url = start_gateway(stack.keys.path, stack.kraken.url, "--listen", "0.0.0.0:0",
                              "--tls-cert", str(made.cert), "--tls-key", str(made.key))
    try:
        port = url.rsplit(":", 1)[1]
        bot = stack.grant("remote", "spot")
        nonce = fresh_nonce()
        body = f"nonce={nonce}"
        conn = http.client.HTTPSConnection(
            "127.0.0.1", int(port), timeout=30,
            context=ssl.create_default_context(cafile=str(made.ca_cert)))
        conn.request("POST", "/0/private/Balance", body, {
            "API-Key": bot.api_key, "API-Sign": sign_spot(bot.api_secret,
                                                          "/0/private/Balance", nonce, body),
            "Content-Type": "application/x-www-form-urlencoded"})
        assert json.loads(conn.getresponse().read())["error"] == []
        conn.close()
    finally:
        stop_gateway(proc)
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
        assert proc.stdout is not None
        proc.stdout.close()
    assert url.startswith("https://0.0.0.0:")
    assert "botvault: warning: listening on 0.0.0.0" in err and "not loopback" in err


def test_the_gateway_works_with_a_sign_only_agent(vault_path: Path) -> None:
    from botvault import agent
    from botvault.errors import VaultError

    with gateway_stack(vault_path, sign_only=True) as stack:
        with agent.connect(stack.keys.path) as client:
            assert client.status()["sign_only"] is True
            with pytest.raises(VaultError):
                client.credentials("spot")  # no process of the user gets the secret
        # Grants are issued with the passphrase (here: the data key) while it runs.
        bot = stack.grant("bot", "spot")
        assert spot_call(stack.url, bot, "Balance")[1]["error"] == []
        assert spot_call(stack.url, bot, "AddOrder", pair="XBTUSD")[1]["error"] == []
        assert stack.kraken.accepted() == 2


def test_when_the_agent_goes_away_requests_are_refused_unsent(stack: Stack) -> None:
    import signal

    from botvault import agent

    from .agent_support import eventually

    bot = stack.grant("bot", "spot")
    assert spot_call(stack.url, bot, "Balance")[1]["error"] == []
    with agent.connect(stack.keys.path) as client:
        pid = int(client.status()["pid"])
    os.kill(pid, signal.SIGTERM)
    assert eventually(lambda: not Path(f"/proc/{pid}").exists()
                      or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2])
    status, doc = spot_call(stack.url, bot, "Balance")
    assert (status, doc) == (503, {"error": ["EService:Unavailable"], "result": {}})
    assert stack.gateway.poll() is None  # the gateway itself goes on
    assert stack.kraken.accepted() == 1 and stack.kraken.rejected() == {}


def test_a_gateway_and_an_in_process_bot_on_one_key_never_collide(vault_path: Path) -> None:
    import threading

    from botvault import agent
    from botvault.request_lock import KeyOrder

    from .gateway_stack import real_api_key

    with gateway_stack(vault_path, latency=0.002) as stack:
        bot = stack.grant("bot", "spot")
        order = KeyOrder(stack.keys.path, "kraken-spot", real_api_key("spot"))
        errors: list[Any] = []

        def through_gateway() -> None:
            for _ in range(60):
                errors.append(spot_call(stack.url, bot, "AddOrder", pair="XBTUSD")[1]
                              ["error"])

        def in_process() -> None:
            with agent.connect(stack.keys.path) as client:
                for _ in range(60):
                    with order.hold():  # what the in-process integrations take
                        signed = client.sign("spot", "/0/private/AddOrder", "pair=XBTUSD")
                        errors.append(_http(stack.kraken.url, "POST", "/0/private/AddOrder",
                                            signed.body, signed.headers)[1]["error"])

        threads = [threading.Thread(target=through_gateway), threading.Thread(target=in_process)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [[]] * 120
        assert stack.kraken.rejected() == {}
        assert stack.kraken.max_in_flight(real_api_key("spot")) == 1


def test_a_json_spot_body_gets_the_keys_nonce_once(stack: Stack) -> None:
    bot = stack.grant("bot", "spot")
    path = "/0/private/AddOrder"
    for _ in range(2):
        nonce = fresh_nonce()
        body = json.dumps({"nonce": nonce, "pair": "XBTUSD", "volume": "0.01"})
        status, doc = _http(stack.url, "POST", path, body, {
            "API-Key": bot.api_key, "API-Sign": sign_spot(bot.api_secret, path, nonce, body),
            "Content-Type": "application/json"})
        assert (status, doc["error"]) == (200, [])
    assert stack.kraken.accepted() == 2 and stack.kraken.rejected() == {}


def test_futures_orders_beyond_the_budget_wait_instead_of_failing(stack: Stack) -> None:
    fut = stack.grant("fbot", "fut")
    path = "/derivatives/api/v3/sendorder"
    data = "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=1&limitPrice=1000"
    results = []
    for _ in range(56):  # 560 units: 60 over the 500 of a 10 s window, about 1.2 s of waits
        nonce = str(fresh_nonce())
        status, doc = _http(stack.url, "POST", path, data, {
            "APIKey": fut.api_key, "Nonce": nonce, "Content-Type":
            "application/x-www-form-urlencoded",
            "Authent": sign_futures(fut.api_secret, path, nonce, data)})
        results.append((status, doc["result"]))
    assert results == [(200, "success")] * 56
    assert stack.kraken.accepted() == 56 and stack.kraken.rejected() == {}

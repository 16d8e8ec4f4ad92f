"""Signing through the agent, and bots against a Kraken-like server.

The end-to-end part runs a small HTTP server that checks requests as Kraken Spot does:
API-Sign over the exact body, a nonce strictly above the last one accepted for the key,
and the key's permissions. Four bot processes share one key: signing through the agent
under `request_lock`, every request is accepted; making millisecond clock nonces
themselves (what ccxt and krakenex do), some are rejected, and how many is recorded.
"""

from __future__ import annotations

import hmac
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botvault import InvalidInputError, NotFoundError, ScopeError, Vault, agent
from botvault.agent.signing import spot_body_with_nonce
from botvault.exchanges.kraken import sign_futures, sign_futures_challenge, sign_spot
from botvault.nonces import key_id
from tests.agent_support import Keys, b64secret, pubkey, running, spec

ENTRIES = {
    "spot": spec("kraken-spot"),
    "spot-ro": spec("kraken-spot", "read-only"),
    "spot-wd": spec("kraken-spot", withdrawal="full"),
    "fut": spec("kraken-futures"),
    "fut-ro": spec("kraken-futures", "read-only"),
    "fut-none": spec("kraken-futures", "none"),
    "gen": spec("generic"),
}
PUBKEY = {name: pubkey(name) for name in ENTRIES}


# -- Spot ------------------------------------------------------------------------------------------


def test_spot_nonce_inserted_and_signature_verifies(client: agent.AgentClient, keys: Keys
                                                    ) -> None:
    signed = client.sign("spot", "/0/private/AddOrder",
                         {"pair": "XBTUSD", "type": "buy", "volume": "0.01"})
    assert signed.body == f"nonce={signed.nonce}&pair=XBTUSD&type=buy&volume=0.01"
    assert signed.headers == {
        "API-Key": PUBKEY["spot"],
        "API-Sign": sign_spot(keys.secrets["spot"], "/0/private/AddOrder", signed.nonce,
                              signed.body)}
    again = client.sign("spot", "/0/private/Balance")
    assert again.nonce > signed.nonce and again.body == f"nonce={again.nonce}"


def test_spot_callers_nonce_replaced_rest_byte_exact(client: agent.AgentClient, keys: Keys
                                                     ) -> None:
    body = "pair=XBT%2FUSD&nonce=1&userref=7&note=a+b%20c&%6Eonce=2&flag"
    signed = client.sign("spot", "/0/private/AddOrder", body)
    assert signed.body == f"pair=XBT%2FUSD&nonce={signed.nonce}&userref=7&note=a+b%20c&flag"
    assert parse_qs(signed.body)["nonce"] == [str(signed.nonce)]
    assert hmac.compare_digest(signed.headers["API-Sign"], sign_spot(
        keys.secrets["spot"], "/0/private/AddOrder", signed.nonce, signed.body))


def test_read_only_spot_key_reads_but_cannot_trade(client: agent.AgentClient) -> None:
    assert client.sign("spot-ro", "/0/private/Balance").headers["API-Key"] == PUBKEY["spot-ro"]
    with pytest.raises(ScopeError, match="AddOrder"):
        client.sign("spot-ro", "/0/private/AddOrder", {"pair": "XBTUSD"})


def test_spot_refuses_json_bodies_and_other_methods(client: agent.AgentClient) -> None:
    with pytest.raises(InvalidInputError, match="URL-encoded"):
        client.sign("spot", "/0/private/Balance", '{"nonce": 1}')
    with pytest.raises(InvalidInputError, match="POST"):
        client.sign("spot", "/0/private/Balance", "", method="GET")


@pytest.mark.parametrize(("entry", "allow", "signs"), [
    ("spot-wd", True, True), ("spot-wd", False, False),
    ("spot", True, False), ("spot", False, False),
])
def test_withdrawal_needs_full_withdrawal_scope_and_allowing_agent(
        keys: Keys, entry: str, allow: bool, signs: bool) -> None:
    with running(keys, allow_withdrawal=allow), agent.connect() as c:
        assert c.status()["allow_withdrawal"] is allow
        for path in ("/0/private/Withdraw", "/0/private/WithdrawStatus"):
            if signs:
                signed = c.sign(entry, path, {"asset": "XBT", "key": "addr", "amount": "1"})
                assert signed.headers["API-Sign"] == sign_spot(
                    keys.secrets[entry], path, signed.nonce, signed.body)
            else:
                with pytest.raises(ScopeError, match="withdraw"):
                    c.sign(entry, path, {"asset": "XBT"})


# -- Futures ---------------------------------------------------------------------------------------


def test_futures_post_headers_verify(client: agent.AgentClient, keys: Keys) -> None:
    body = urlencode({"orderType": "lmt", "symbol": "PF_XBTUSD", "side": "buy", "size": "1",
                      "limitPrice": "1000.5"})
    signed = client.sign("fut", "/derivatives/api/v3/sendorder", body)
    assert signed.body == body
    assert signed.headers["APIKey"] == PUBKEY["fut"]
    assert signed.headers["Nonce"] == str(signed.nonce)
    assert signed.headers["Authent"] == sign_futures(keys.secrets["fut"], "/api/v3/sendorder",
                                                     signed.nonce, body)


def test_futures_get_query_string_and_read_only(client: agent.AgentClient, keys: Keys) -> None:
    query = "symbol=PF_XBTUSD&lastTime=2024-01-01T00%3A00%3A00Z"
    signed = client.sign("fut-ro", "/derivatives/api/v3/fills", query, method="GET")
    assert signed.body == query
    assert signed.headers["Authent"] == sign_futures(keys.secrets["fut-ro"], "/api/v3/fills",
                                                     signed.nonce, query)
    with pytest.raises(ScopeError):
        client.sign("fut-ro", "/derivatives/api/v3/sendorder", "size=1")
    with pytest.raises(ScopeError):
        client.sign("fut-none", "/derivatives/api/v3/fills", "", method="GET")
    with pytest.raises(InvalidInputError, match="query string"):
        client.sign("fut-ro", "/derivatives/api/v3/fills?symbol=x", "", method="GET")


def test_futures_websocket_challenge(client: agent.AgentClient, keys: Keys) -> None:
    challenge = "c100b894-1729-464d-ace1-52dbce11db42"
    assert client.sign_challenge("fut-ro", challenge) == sign_futures_challenge(
        keys.secrets["fut-ro"], challenge)
    with pytest.raises(ScopeError):
        client.sign_challenge("fut-none", challenge)
    with pytest.raises(InvalidInputError):
        client.sign_challenge("spot", challenge)


def test_unsignable_entries(client: agent.AgentClient, keys: Keys) -> None:
    with pytest.raises(InvalidInputError, match="Kraken"):
        client.sign("gen", "/anything")
    with pytest.raises(NotFoundError):
        client.sign("missing", "/0/private/Balance")
    with Vault.open_with_key(keys.path, keys.data_key) as v:
        _new, retired = v.rotate("spot", api_key="PUBSPOTKEYNEW", api_secret=b64secret())
    with pytest.raises(ScopeError, match="retired"):
        client.sign(retired.name, "/0/private/Balance")
    # The agent noticed the rotation: the name now signs with the new pair.
    assert client.sign("spot", "/0/private/Balance").headers["API-Key"] == "PUBSPOTKEYNEW"


def test_secret_never_in_answers_or_errors(client: agent.AgentClient, keys: Keys) -> None:
    secret = keys.secrets["spot"]
    signed = client.sign("spot", "/0/private/Balance")
    assert secret not in repr(signed) and secret not in json.dumps(signed.headers)
    with pytest.raises(ScopeError) as info:
        client.sign("spot", "/0/private/Withdraw")
    assert secret not in str(info.value) and secret not in str(info.value.hint)


# -- the body rewrite, as a property ------------------------------------------------------------

fields = st.lists(st.tuples(st.text(min_size=1, max_size=8).filter(lambda k: k != "nonce"),
                            st.text(max_size=8)), max_size=6)


@given(fields=fields, old_nonce=st.none() | st.integers(0, 10**12),
       at=st.integers(0, 6), nonce=st.integers(1, 2**63))
def test_spot_body_rewrite_property(fields: list[tuple[str, str]], old_nonce: int | None,
                                    at: int, nonce: int) -> None:
    parts = [f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in fields]
    if old_nonce is not None:
        parts.insert(min(at, len(parts)), f"nonce={old_nonce}")
    out = spot_body_with_nonce("&".join(parts), nonce)
    assert parse_qs(out, keep_blank_values=True)["nonce"] == [str(nonce)]
    assert [p for p in out.split("&") if not p.startswith("nonce=")] == \
        [p for p in parts if not p.startswith("nonce=")]


# -- end to end: bots against a Kraken-like server ----------------------------------------------


class FakeKraken:
    """Kraken Spot's private API as far as nonces, signatures and permissions go."""

    def __init__(self, keys: dict[str, tuple[str, str]]) -> None:
        self.keys = keys  # api key -> (secret, general scope)
        self.last_nonce: dict[str, int] = {}
        self.outcomes: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.host = ""

    def answer(self, path: str, headers: dict[str, str], body: str) -> list[str]:
        api_key = headers.get("API-Key", "")
        if api_key not in self.keys:
            return ["EAPI:Invalid key"]
        secret, general = self.keys[api_key]
        nonce_values = parse_qs(body).get("nonce", [])
        if len(nonce_values) != 1 or not nonce_values[0].isdigit():
            return ["EAPI:Invalid nonce"]
        nonce = int(nonce_values[0])
        expected = sign_spot(secret, path, nonce, body)
        if not hmac.compare_digest(expected, headers.get("API-Sign", "")):
            return ["EAPI:Invalid signature"]
        with self.lock:  # Kraken: strictly above the last nonce it accepted for this key
            if nonce <= self.last_nonce.get(api_key, 0):
                return ["EAPI:Invalid nonce"]
            self.last_nonce[api_key] = nonce
        if path.endswith("/AddOrder") and general != "full":
            return ["EGeneral:Permission denied"]
        return []

    def serve(self) -> ThreadingHTTPServer:
        kraken = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the second one waits
            # for the client's delayed ACK (40 ms) on every request.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                errors = kraken.answer(self.path, dict(self.headers.items()), body)
                with kraken.lock:
                    kraken.outcomes[errors[0] if errors else "ok"] += 1
                out = json.dumps({"error": errors, "result": {} if not errors else None})
                data = out.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass  # quiet: pytest shows the test's own output

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self.host = f"127.0.0.1:{server.server_address[1]}"
        return server


_BOT = r"""
import http.client, json, os, sys, time
from botvault import agent
from botvault.exchanges.kraken import sign_spot

host, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection(host, timeout=30)
errors = []
def post(body, headers):
    conn.request("POST", "/0/private/AddOrder", body=body,
                 headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    errors.extend(json.loads(conn.getresponse().read())["error"])
order = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "1000",
         "volume": "0.01"}
if mode == "agent":
    with agent.connect() as client:
        for _ in range(count):
            with client.request_lock("spot"):
                signed = client.sign("spot", "/0/private/AddOrder", order)
                post(signed.body, signed.headers)
else:  # what ccxt / krakenex do: a millisecond clock nonce, made by each process
    secret, key = os.environ["BOT_SECRET"], os.environ["BOT_KEY"]
    from urllib.parse import urlencode
    for _ in range(count):
        nonce = int(time.time() * 1000)
        body = urlencode({"nonce": nonce, **order})
        post(body, {"API-Key": key, "API-Sign": sign_spot(secret, "/0/private/AddOrder",
                                                          nonce, body)})
print(json.dumps(errors))
"""


def _run_bots(host: str, mode: str, count: int, env: dict[str, str]) -> list[str]:
    bots = [subprocess.Popen([sys.executable, "-c", _BOT, host, mode, str(count)],
                             stdout=subprocess.PIPE, env=env) for _ in range(4)]
    errors: list[str] = []
    for bot in bots:
        out, _ = bot.communicate(timeout=120)
        assert bot.returncode == 0
        errors += json.loads(out)
    return errors


@pytest.fixture
def kraken(keys: Keys) -> Iterator[FakeKraken]:
    fake = FakeKraken({PUBKEY[n]: (keys.secrets[n], ENTRIES[n]["general"])
                       for n in ("spot", "spot-ro")})
    server = fake.serve()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_four_bots_one_key_through_the_agent_all_accepted(
        keys: Keys, kraken: FakeKraken, record_property: Callable[[str, object], None]) -> None:
    with running(keys):
        errors = _run_bots(kraken.host, "agent", 150, dict(os.environ))
    record_property("agent_rejections", len(errors))
    assert errors == []
    assert kraken.outcomes == Counter({"ok": 600})


@pytest.mark.slow
def test_four_bots_one_key_with_clock_nonces_get_rejected(
        keys: Keys, kraken: FakeKraken, record_property: Callable[[str, object], None],
        capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ, "BOT_SECRET": keys.secrets["spot"], "BOT_KEY": PUBKEY["spot"]}
    errors = _run_bots(kraken.host, "clock", 150, env)
    rejected = errors.count("EAPI:Invalid nonce")
    record_property("clock_nonce_rejections", rejected)
    with capsys.disabled():
        print(f"\n[e2e] 4 bots x 150 requests, one key: millisecond clock nonces -> "
              f"{rejected} of 600 rejected with EAPI:Invalid nonce; through the agent -> 0")
    assert set(errors) <= {"EAPI:Invalid nonce"}
    assert kraken.outcomes["ok"] + rejected == 600


def test_read_only_key_cannot_place_an_order(keys: Keys, kraken: FakeKraken) -> None:
    with running(keys), agent.connect() as client, pytest.raises(ScopeError), \
            client.request_lock("spot-ro"):
        client.sign("spot-ro", "/0/private/AddOrder", {"pair": "XBTUSD"})
    assert sum(kraken.outcomes.values()) == 0  # refused before any request was sent
    # The exchange would have said no as well, had the bot held the secret itself.
    body = "nonce=1&pair=XBTUSD"
    assert kraken.answer("/0/private/AddOrder", {
        "API-Key": PUBKEY["spot-ro"],
        "API-Sign": sign_spot(keys.secrets["spot-ro"], "/0/private/AddOrder", 1, body)},
        body) == ["EGeneral:Permission denied"]
    assert kraken.answer("/0/private/Balance", {"API-Key": PUBKEY["spot"], "API-Sign": "x"},
                         "nonce=5") == ["EAPI:Invalid signature"]


def test_request_lock_is_exclusive_and_private(client: agent.AgentClient, keys: Keys) -> None:
    import fcntl

    with client.request_lock("spot"):
        # Keyed like the nonce counter, by exchange and api key, never by the entry's name.
        lock_file = keys.path.with_name(keys.path.name + ".requests") / \
            f"{key_id('kraken-spot', PUBKEY['spot'])}.lock"
        assert not (lock_file.parent / "spot.lock").exists()
        assert oct(os.stat(lock_file.parent).st_mode & 0o777) == "0o700"
        assert oct(os.stat(lock_file).st_mode & 0o777) == "0o600"
        fd = os.open(lock_file, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on exit
    finally:
        os.close(fd)
    with pytest.raises(InvalidInputError), client.request_lock("../escape"):
        pass

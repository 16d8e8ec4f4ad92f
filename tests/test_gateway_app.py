"""The gateway's own logic against the strict Kraken stand-in, with the agent's grant
operations played by `FakeGrants` (the end-to-end tests with the real agent are in
test_gateway_e2e.py): routing, Kraken-format refusals, header handling, nonces, pacing,
order, limits, TLS."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import trustme

from botvault.audit import FIELDS
from botvault.exchanges.kraken import sign_futures, sign_spot
from botvault.gateway.config import GatewayConfig
from botvault.gateway.kraken_errors import OUTCOME_UNKNOWN_TEXT, RATE_LIMIT_ERROR
from botvault.nonces import key_id
from botvault.request_lock import KeyOrder
from botvault.scopes import General

from .gateway_support import FakeGrant, FakeGrants, ListAuditor, b64secret, running_gateway
from .kraken_server import StrictKraken, http_json

SPOT_KEY, FUT_KEY, SPOT_KEY_2 = "REALSPOTKEY", "REALFUTKEY", "REALSPOTKEY2"


@pytest.fixture
def kraken() -> Iterator[StrictKraken]:
    with StrictKraken(tier="pro") as server:
        yield server


@pytest.fixture
def grants(kraken: StrictKraken) -> FakeGrants:
    fake = FakeGrants()
    for api_key, exchange, product in ((SPOT_KEY, "kraken-spot", "spot"),
                                       (SPOT_KEY_2, "kraken-spot", "spot"),
                                       (FUT_KEY, "kraken-futures", "futures")):
        real = b64secret()
        kraken.add_key(api_key, real, product)
        fake.add(f"bvg_{api_key}", FakeGrant(f"bot-{api_key}", f"entry-{api_key}", exchange,
                                             api_key, real))
    fake.add("bvg_reader", FakeGrant("reader", f"entry-{SPOT_KEY}", "kraken-spot", SPOT_KEY,
                                     fake.grants[f"bvg_{SPOT_KEY}"].real_secret,
                                     general=General.READ_ONLY))
    return fake


def _config(kraken: StrictKraken, **kw: Any) -> GatewayConfig:
    return GatewayConfig(spot_url=kraken.url, futures_url=kraken.url, tier="pro", **kw)


@pytest.fixture
def gateway(kraken: StrictKraken, grants: FakeGrants, tmp_path: Path) -> Iterator[str]:
    with running_gateway(_config(kraken), grants, tmp_path / "vault.bv") as url:
        yield url


_http = http_json  # one plain-HTTP helper, beside the stand-in


def _spot(url: str, grants: FakeGrants, grant_key: str, method: str, nonce: int = 1,
          secret: str | None = None, **fields: str) -> tuple[int, Any]:
    path = f"/0/private/{method}"
    body = urlencode({"nonce": nonce, **fields})
    secret = secret or grants.grants[grant_key].secret
    headers = {"API-Key": grant_key, "API-Sign": sign_spot(secret, path, nonce, body),
               "Content-Type": "application/x-www-form-urlencoded"}
    return _http(url, "POST", path, body, headers)


def _futures(url: str, grants: FakeGrants, method: str, endpoint: str, data: str = "",
             grant_key: str = f"bvg_{FUT_KEY}", nonce: str = "7") -> tuple[int, Any]:
    path = f"/derivatives/api/v3/{endpoint}"
    headers = {"APIKey": grant_key, "Nonce": nonce,
               "Authent": sign_futures(grants.grants[grant_key].secret, path, nonce, data)}
    if method == "GET":
        return _http(url, method, path + (f"?{data}" if data else ""), b"", headers)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return _http(url, method, path, data, headers)


def test_spot_private_call_is_signed_with_the_real_key_and_a_fresh_nonce(
        gateway: str, grants: FakeGrants, kraken: StrictKraken) -> None:
    # The bot's own nonce repeats (several processes on one clock): the gateway absorbs it.
    for _ in range(3):
        status, doc = _spot(gateway, grants, f"bvg_{SPOT_KEY}", "Balance", nonce=5)
        assert (status, doc["error"]) == (200, [])
        assert doc["result"]["ZUSD"] == "1000.0000"
    status, doc = _spot(gateway, grants, f"bvg_{SPOT_KEY}", "AddOrder", pair="XBTUSD",
                        type="buy", ordertype="limit", price="1000", volume="0.01")
    assert doc["error"] == [] and doc["result"]["txid"]
    assert kraken.accepted() == 4 and kraken.rejected() == {}


def test_futures_get_with_query_and_post_are_signed_with_the_nonce_header(
        gateway: str, grants: FakeGrants, kraken: StrictKraken) -> None:
    status, doc = _futures(gateway, grants, "GET", "openorders", "a=1&b=x%20y", nonce="1")
    assert (status, doc["result"]) == (200, "success")
    status, doc = _futures(gateway, grants, "POST", "sendorder",
                           "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=1&limitPrice=1",
                           nonce="1")
    assert doc["result"] == "success" and doc["sendStatus"]["status"] == "placed"
    assert kraken.accepted() == 2 and kraken.rejected() == {}


def test_public_endpoints_pass_through(gateway: str, kraken: StrictKraken) -> None:
    status, doc = _http(gateway, "GET", "/0/public/Time")
    assert status == 200 and doc["result"]["unixtime"] > 0
    status, doc = _http(gateway, "GET", "/derivatives/api/v3/tickers")
    assert doc["result"] == "success" and doc["tickers"]
    assert kraken.paths["/0/public/Time"] == 1


@pytest.mark.parametrize(("case", "expected"), [
    ("unknown", ["EAPI:Invalid key"]),
    ("revoked", ["EAPI:Invalid key"]),
    ("signature", ["EAPI:Invalid signature"]),
    ("scope", ["EGeneral:Permission denied"]),
    ("no-credentials", ["EAPI:Invalid key"]),
    ("futures-grant-at-spot", ["EAPI:Invalid key"]),
])
def test_spot_refusals_are_krakens_and_never_reach_the_exchange(
        gateway: str, grants: FakeGrants, kraken: StrictKraken, case: str,
        expected: list[str]) -> None:
    key = f"bvg_{SPOT_KEY}"
    if case == "unknown":
        status, doc = _spot(gateway, grants, "bvg_nobody", "Balance", secret=b64secret())
    elif case == "revoked":
        grants.grants[key].revoked = True
        status, doc = _spot(gateway, grants, key, "Balance")
    elif case == "signature":
        status, doc = _spot(gateway, grants, key, "Balance", secret=b64secret())
    elif case == "scope":
        status, doc = _spot(gateway, grants, "bvg_reader", "AddOrder", pair="XBTUSD")
    elif case == "no-credentials":
        status, doc = _http(gateway, "POST", "/0/private/Balance", "nonce=1")
    else:
        fut = f"bvg_{FUT_KEY}"
        status, doc = _spot(gateway, grants, fut, "Balance")
    assert (status, doc) == (200, {"error": expected, "result": {}})
    assert kraken.paths["/0/private/Balance"] == kraken.paths["/0/private/AddOrder"] == 0
    assert grants.signed == 0


def test_futures_refusals_are_krakens_and_never_reach_the_exchange(
        gateway: str, grants: FakeGrants, kraken: StrictKraken) -> None:
    grants.add("bvg_fut_reader", FakeGrant("fr", "e", "kraken-futures", FUT_KEY, b64secret(),
                                           general=General.READ_ONLY))
    answers = [
        _futures(gateway, grants, "POST", "sendorder", "size=1", grant_key="bvg_fut_reader"),
        _http(gateway, "GET", "/derivatives/api/v3/accounts",
              headers={"APIKey": f"bvg_{FUT_KEY}", "Authent": "AAAA"}),
        _http(gateway, "GET", "/derivatives/api/v3/accounts"),
        _http(gateway, "GET", "/derivatives/api/v3/accounts",
              headers={"APIKey": "bvg_nobody", "Authent": "AAAA"}),
    ]
    for status, doc in answers:
        assert status == 200
        assert doc["result"] == "error" and doc["error"] == "authenticationError"
    assert not any(p.endswith(("sendorder", "accounts")) for p in kraken.paths)


def test_the_bots_auth_headers_are_stripped_and_others_not_forwarded(
        kraken: StrictKraken, grants: FakeGrants, tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []
    original = kraken.answer

    def recording(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        seen.append({k.lower(): v for k, v in headers.items()})
        return original(method, target, headers, body)

    kraken.answer = recording  # type: ignore[method-assign]
    with running_gateway(_config(kraken), grants, tmp_path / "v.bv") as url:
        _http(url, "GET", "/0/public/Time",
              headers={"API-Key": "bot", "API-Sign": "x", "Cookie": "c=1",
                       "Authorization": "Bearer t", "User-Agent": "my-bot/1"})
        _spot(url, grants, f"bvg_{SPOT_KEY}", "Balance")
    public, private = seen
    assert "api-key" not in public and "api-sign" not in public
    assert "cookie" not in public and "authorization" not in public
    assert public["user-agent"] == "my-bot/1"
    assert private["api-key"] == SPOT_KEY  # the real key, not the grant


def test_unknown_paths_are_refused(gateway: str, kraken: StrictKraken) -> None:
    for target in ("/", "/admin", "/0/../etc/passwd", "/derivatives//api/v3/x",
                   "/0/private/Withdr%61w", "/0/private/%41ddOrder"):
        status, doc = _http(gateway, "GET", target)
        assert status == 404 and doc["error"] == ["EGeneral:Unknown method"]
    assert sum(kraken.paths.values()) == 0


def test_one_key_one_request_at_a_time_other_keys_go_on(
        kraken: StrictKraken, grants: FakeGrants, tmp_path: Path) -> None:
    kraken.latency = 0.02
    vault = tmp_path / "vault.bv"
    with running_gateway(_config(kraken), grants, vault) as url:
        results: list[Any] = []

        def bot(key: str, method: str) -> None:
            for _ in range(4):
                results.append(_spot(url, grants, key, method, nonce=1)[1]["error"])

        threads = [threading.Thread(target=bot, args=(f"bvg_{SPOT_KEY}", "AddOrder"))
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [[]] * 24
        assert kraken.max_in_flight(SPOT_KEY) == 1
        # While something else holds SPOT_KEY's order, a request on another key is served.
        with KeyOrder.for_key_id(vault, key_id("kraken-spot", SPOT_KEY)).hold():
            assert _spot(url, grants, f"bvg_{SPOT_KEY_2}", "Balance")[1]["error"] == []
    assert kraken.rejected() == {}


def test_a_wait_beyond_the_bound_is_answered_rate_limit_by_the_gateway(
        kraken: StrictKraken, grants: FakeGrants, tmp_path: Path) -> None:
    config = GatewayConfig(spot_url=kraken.url, futures_url=kraken.url, tier="pro",
                           max_wait=0.5)
    with running_gateway(config, grants, tmp_path / "v.bv") as url:
        errors = [_spot(url, grants, f"bvg_{SPOT_KEY}", "Balance")[1]["error"]
                  for _ in range(21)]
    assert errors[:20] == [[]] * 20
    assert errors[20] == [RATE_LIMIT_ERROR]
    assert kraken.accepted() == 20 and kraken.rejected() == {}


def test_requests_beyond_the_counter_wait_instead_of_failing(
        kraken: StrictKraken, grants: FakeGrants, tmp_path: Path) -> None:
    # pro: 20 at once, then one per second; 22 requests need about 2 s of waiting.
    with running_gateway(_config(kraken), grants, tmp_path / "v.bv") as url:
        errors = [_spot(url, grants, f"bvg_{SPOT_KEY}", "Balance")[1]["error"]
                  for _ in range(22)]
    assert errors == [[]] * 22
    assert kraken.accepted() == 22 and kraken.rejected() == {}


def test_oversized_requests_are_refused(gateway: str, grants: FakeGrants,
                                        kraken: StrictKraken) -> None:
    status, doc = _http(gateway, "POST", "/0/private/Balance", b"x" * (256 * 1024 + 1),
                        {"API-Key": f"bvg_{SPOT_KEY}", "API-Sign": "x"})
    assert status == 413 and doc["error"] == ["EGeneral:Invalid arguments"]
    # Chunked, without a length: refused once it grows past the limit.
    conn = http.client.HTTPConnection(urlsplit(gateway).netloc, timeout=30)
    conn.request("POST", "/0/private/Balance",
                 body=iter([b"y" * 65536] * 5), headers={"API-Key": "k", "API-Sign": "s"},
                 encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    conn.close()
    assert kraken.paths["/0/private/Balance"] == 0


def _raw(url: str, data: bytes) -> bytes:
    host, port = urlsplit(url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def test_slow_and_malformed_clients_do_not_affect_other_bots(
        kraken: StrictKraken, grants: FakeGrants, tmp_path: Path) -> None:
    config = GatewayConfig(spot_url=kraken.url, futures_url=kraken.url, tier="pro",
                           body_timeout=0.5, idle_timeout=1.0)
    with running_gateway(config, grants, tmp_path / "v.bv") as url:
        host, port = urlsplit(url).netloc.split(":")
        # A client that announces a body and never sends it ...
        slow = socket.create_connection((host, int(port)))
        slow.sendall(b"POST /0/private/Balance HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100\r\nAPI-Key: k\r\nAPI-Sign: s\r\n\r\nnonce=")
        # ... one that dribbles its headers ...
        dribble = socket.create_connection((host, int(port)))
        dribble.sendall(b"POST /0/private/Balance HTTP/1.1\r\nHo")
        # ... while others send garbage, then a real bot is served.
        for garbage in (b"\x16\x03\x01garbage\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                        b"POST /0/private/Balance HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"):
            assert _raw(url, garbage).split(b"\r\n")[0].split(b" ")[1] in (b"400", b"414")
        assert _spot(url, grants, f"bvg_{SPOT_KEY}", "Balance")[1]["error"] == []
        slow.settimeout(10)
        answer = slow.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"EGeneral:Invalid arguments" in answer
        slow.close()
        # The one that never finishes its headers is closed once idle too long.
        dribble.settimeout(10)
        assert dribble.recv(65536) == b""
        dribble.close()
    assert kraken.accepted() == 1 and kraken.rejected() == {}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_kraken(ca: trustme.CA, host: str) -> StrictKraken:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    return StrictKraken(tier="pro", ssl_context=context)


def test_upstream_over_tls_verified_against_the_ca_file(
        ca: trustme.CA, grants: FakeGrants, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with _tls_kraken(ca, "127.0.0.1") as kraken:
        kraken.add_key(SPOT_KEY, grants.grants[f"bvg_{SPOT_KEY}"].real_secret, "spot")
        assert kraken.url.startswith("https://")
        config = GatewayConfig(spot_url=kraken.url, futures_url=kraken.url, ca_file=ca_file)
        with running_gateway(config, grants, tmp_path / "v.bv") as url:
            assert _spot(url, grants, f"bvg_{SPOT_KEY}", "Balance")[1]["error"] == []
        # Without the CA (the system's roots only) the same server is refused.
        with running_gateway(GatewayConfig(spot_url=kraken.url, futures_url=kraken.url),
                             grants, tmp_path / "v.bv") as url:
            status, doc = _spot(url, grants, f"bvg_{SPOT_KEY}", "Balance")
        assert (status, doc["error"]) == (502, ["EService:Unavailable"])
        assert kraken.accepted() == 1


def test_a_certificate_for_another_host_is_refused(
        ca: trustme.CA, grants: FakeGrants, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with _tls_kraken(ca, "api.kraken.com") as kraken:  # valid, signed, but not for 127.0.0.1
        kraken.add_key(SPOT_KEY, grants.grants[f"bvg_{SPOT_KEY}"].real_secret, "spot")
        config = GatewayConfig(spot_url=kraken.url, futures_url=kraken.url, ca_file=ca_file)
        with running_gateway(config, grants, tmp_path / "v.bv") as url:
            status, doc = _spot(url, grants, f"bvg_{SPOT_KEY}", "Balance")
        assert (status, doc["error"]) == (502, ["EService:Unavailable"])
        assert kraken.accepted() == 0


def test_audit_records_each_request_without_secrets_or_bodies(
        kraken: StrictKraken, grants: FakeGrants, tmp_path: Path) -> None:
    auditor = ListAuditor()
    lines = auditor.lines
    with running_gateway(_config(kraken), grants, tmp_path / "v.bv", audit=auditor) as url:
        _spot(url, grants, f"bvg_{SPOT_KEY}", "AddOrder", pair="XBTUSD", volume="0.0123")
        _spot(url, grants, f"bvg_{SPOT_KEY}", "Balance", secret=b64secret())
        _http(url, "GET", "/0/public/Time")
        _http(url, "GET", "/0/public/Time")
    # A forwarded request: its line before it left, completed when the answer was back;
    # everything that sent nothing under a grant: counted, in summary lines.
    sent, done, *summaries = lines
    assert (sent["phase"], sent["grant"], sent["endpoint"]) == (
        "sent", f"bot-{SPOT_KEY}", "/0/private/AddOrder")
    assert (done["phase"], done["seq"], done["outcome"], done["upstream_status"]) == (
        "done", sent["seq"], "forwarded", 200)
    assert sent["entry"] == f"entry-{SPOT_KEY}" and sent["exchange"] == "kraken-spot"
    assert sorted((r["phase"], r["outcome"], r["grant"], r["count"]) for r in summaries) == [
        ("summary", "invalid-signature", None, 1), ("summary", "public", None, 2)]
    for line in lines:
        assert set(line) <= FIELDS  # what botvault.audit.append_audit accepts
    text = json.dumps(lines)
    assert "0.0123" not in text and "XBTUSD" not in text
    for grant in grants.grants.values():
        assert grant.secret not in text and grant.real_secret not in text


def test_badly_signed_requests_cost_no_other_bot_its_keys_budget(
        kraken: StrictKraken, grants: FakeGrants, tmp_path: Path) -> None:
    # Someone who knows a grant's api key (it sits in bot configs) but not its secret floods
    # the gateway; the key's real bot is then still served at once.
    config = GatewayConfig(spot_url=kraken.url, futures_url=kraken.url, tier="pro",
                           max_wait=0.5)
    with running_gateway(config, grants, tmp_path / "v.bv") as url:
        key = f"bvg_{SPOT_KEY}"
        flood = [_spot(url, grants, key, "Balance", secret=b64secret())[1]["error"]
                 for _ in range(40)]
        assert flood == [["EAPI:Invalid signature"]] * 40
        served = [_spot(url, grants, key, "Balance")[1]["error"] for _ in range(19)]
    assert served == [[]] * 19
    assert kraken.accepted() == 19 and kraken.rejected() == {}


def test_a_large_answer_arrives_whole(gateway: str, kraken: StrictKraken) -> None:
    import tests.kraken_server as server

    big = {f"PAIR{i}": {"altname": f"P{i}", "pad": "x" * 200} for i in range(2000)}
    original = server._spot_public

    def public(method: str) -> Any:
        if method == "AssetPairs":
            return server._Answer(200, {"error": [], "result": big}, "public")
        return original(method)

    server._spot_public = public
    try:
        status, doc = _http(gateway, "GET", "/0/public/AssetPairs")
    finally:
        server._spot_public = original
    assert status == 200 and doc["result"] == big  # about 500 KB, in many reads


def test_faults_are_answered_in_krakens_format_and_send_nothing(
        kraken: StrictKraken, grants: FakeGrants, tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    vault = tmp_path / "v.bv"
    with running_gateway(_config(kraken), grants, vault) as url:
        requests = vault.with_name(vault.name + ".requests")
        requests.mkdir(mode=0o700)
        requests.chmod(0o777)  # someone opened the key's lock folder to others
        status, doc = _spot(url, grants, f"bvg_{SPOT_KEY}", "Balance")
        assert (status, doc["error"]) == (503, ["EService:Unavailable"])
        requests.chmod(0o700)

        async def broken(request: Any, verified: Any) -> Any:
            raise RuntimeError("volume=0.123 secret-ish detail")

        grants.sign = broken  # type: ignore[method-assign]
        status, doc = _spot(url, grants, f"bvg_{SPOT_KEY}", "Balance")
        assert (status, doc["error"]) == (500, ["EGeneral:Internal error"])
    err = capfd.readouterr().err
    assert "RuntimeError" in err and "0.123" not in err
    assert kraken.paths["/0/private/Balance"] == 0


def test_an_answer_lost_before_any_of_it_reached_the_bot_is_an_unknown_outcome(
        grants: FakeGrants, tmp_path: Path) -> None:
    # The exchange took the request, sent its status and headers, and the way back died
    # before the body: nothing reached the bot yet, so it is told the outcome is unknown
    # (504), never a status it could take for the whole answer.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def exchange() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n")

    thread = threading.Thread(target=exchange, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    auditor = ListAuditor()
    path, body = "/0/private/Balance", "nonce=1"
    secret = grants.grants[f"bvg_{SPOT_KEY}"].secret
    with running_gateway(GatewayConfig(spot_url=url, futures_url=url), grants,
                         tmp_path / "v.bv", audit=auditor) as gateway:
        conn = http.client.HTTPConnection(urlsplit(gateway).netloc, timeout=30)
        conn.request("POST", path, body, {"API-Key": f"bvg_{SPOT_KEY}",
                                          "API-Sign": sign_spot(secret, path, 1, body)})
        answer = conn.getresponse()
        status, text = answer.status, answer.read().decode()
        conn.close()
    thread.join(10)
    listener.close()
    assert (status, text) == (504, OUTCOME_UNKNOWN_TEXT)
    done = [line for line in auditor.lines if line["phase"] == "done"]
    assert [line["outcome"] for line in done] == ["outcome unknown"]

"""The strict Kraken stand-in itself: it must refuse what Kraken refuses, or the end-to-end
tests that rely on it prove nothing."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from botvault.exchanges.kraken import sign_futures, sign_spot

from .kraken_server import SPOT_TIERS, StrictKraken, http_json

SPOT_KEY, FUT_KEY = "spot-public-key", "futures-public-key"
SECRET = base64.b64encode(secrets.token_bytes(64)).decode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kraken(clock: Clock) -> Iterator[StrictKraken]:
    server = StrictKraken(clock=clock)
    server.add_key(SPOT_KEY, SECRET, "spot")
    server.add_key("reader", SECRET, "spot", general="read-only")
    server.add_key(FUT_KEY, SECRET, "futures")
    with server:
        yield server


def _request(kraken: StrictKraken, method: str, path: str, body: str = "",
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return http_json(kraken.url, method, path, body, headers)


def _spot(kraken: StrictKraken, method: str, nonce: int, *, key: str = SPOT_KEY,
          secret: str = SECRET, **fields: str) -> list[str]:
    path = f"/0/private/{method}"
    body = urlencode({"nonce": nonce, **fields})
    headers = {"API-Key": key, "API-Sign": sign_spot(secret, path, nonce, body),
               "Content-Type": "application/x-www-form-urlencoded"}
    errors: list[str] = _request(kraken, "POST", path, body, headers)[1]["error"]
    return errors


def test_spot_accepts_a_signed_request_and_refuses_a_replayed_nonce(kraken: StrictKraken
                                                                    ) -> None:
    assert _spot(kraken, "Balance", 5) == []
    assert _spot(kraken, "Balance", 5) == ["EAPI:Invalid nonce"]
    assert _spot(kraken, "Balance", 4) == ["EAPI:Invalid nonce"]
    assert _spot(kraken, "Balance", 6) == []
    assert kraken.accepted() == 2
    assert kraken.rejected() == {"EAPI:Invalid nonce": 2}


def test_spot_refuses_bad_signature_unknown_key_and_missing_nonce(kraken: StrictKraken
                                                                  ) -> None:
    other = base64.b64encode(b"x" * 64).decode()
    assert _spot(kraken, "Balance", 1, secret=other) == ["EAPI:Invalid signature"]
    assert _spot(kraken, "Balance", 2, key="nobody") == ["EAPI:Invalid key"]
    status, doc = _request(kraken, "POST", "/0/private/Balance", "a=1",
                           {"API-Key": SPOT_KEY, "API-Sign": "x"})
    assert (status, doc["error"]) == (200, ["EAPI:Invalid nonce"])
    # A signature that failed does not move the key's nonce.
    assert _spot(kraken, "Balance", 1) == []


def test_spot_permissions_follow_the_key(kraken: StrictKraken) -> None:
    assert _spot(kraken, "Balance", 1, key="reader") == []
    assert _spot(kraken, "AddOrder", 2, key="reader") == ["EGeneral:Permission denied"]
    assert _spot(kraken, "Withdraw", 1) == ["EGeneral:Permission denied"]


def test_spot_rate_counter_by_tier_with_decay(kraken: StrictKraken, clock: Clock) -> None:
    limit, decay = SPOT_TIERS["starter"]
    nonce = 0
    for _ in range(int(limit)):
        nonce += 1
        assert _spot(kraken, "Balance", nonce) == []
    nonce += 1
    assert _spot(kraken, "Balance", nonce) == ["EAPI:Rate limit exceeded"]
    nonce += 1
    assert _spot(kraken, "AddOrder", nonce) == []  # outside the REST counter
    clock.now += 2 / decay  # two calls' worth decays
    nonce += 1
    assert _spot(kraken, "Ledgers", nonce) == []  # costs 2
    nonce += 1
    assert _spot(kraken, "Balance", nonce) == ["EAPI:Rate limit exceeded"]


def _futures(kraken: StrictKraken, endpoint: str, nonce: str, post_data: str = "",
             method: str = "POST", secret: str = SECRET) -> tuple[int, Any]:
    headers = {"APIKey": FUT_KEY, "Nonce": nonce,
               "Authent": sign_futures(secret, f"/api/v3/{endpoint}", nonce, post_data)}
    if method == "GET":
        target = f"/derivatives/api/v3/{endpoint}" + (f"?{post_data}" if post_data else "")
        return _request(kraken, "GET", target, "", headers)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return _request(kraken, "POST", f"/derivatives/api/v3/{endpoint}", post_data, headers)


def test_futures_signature_nonce_order_and_budget(kraken: StrictKraken, clock: Clock) -> None:
    assert _futures(kraken, "accounts", "100", method="GET")[1]["result"] == "success"
    assert _futures(kraken, "accounts", "100", method="GET")[1]["error"] == "nonceDuplicate"
    assert _futures(kraken, "accounts", "99", method="GET")[1]["error"] == "nonceBelowThreshold"
    order = "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=1&limitPrice=1000"
    assert _futures(kraken, "sendorder", "101", order)[1]["result"] == "success"
    bad = base64.b64encode(b"y" * 64).decode()
    assert _futures(kraken, "sendorder", "102", order, secret=bad)[1]["error"] == (
        "authenticationError")
    nonce = 102
    spent = 2 + 10
    while spent + 10 <= 500:
        nonce += 1
        assert _futures(kraken, "sendorder", str(nonce), order)[1]["result"] == "success"
        spent += 10
    nonce += 1
    status, doc = _futures(kraken, "sendorder", str(nonce), order)
    assert (status, doc["error"]) == (429, "apiLimitExceeded")
    clock.now += 1.0  # 50 units back
    nonce += 1
    assert _futures(kraken, "sendorder", str(nonce), order)[1]["result"] == "success"


def test_public_endpoints_answer_without_keys(kraken: StrictKraken) -> None:
    assert _request(kraken, "GET", "/0/public/Time")[1]["error"] == []
    assert "XXBTZUSD" in _request(kraken, "GET", "/0/public/AssetPairs")[1]["result"]
    assert _request(kraken, "GET", "/derivatives/api/v3/instruments")[1]["result"] == "success"


def test_futures_signs_the_query_string_then_the_body(kraken: StrictKraken) -> None:
    path = "/derivatives/api/v3/sendorder"
    query, body = "orderType=lmt&symbol=PF_XBTUSD", "side=buy&size=1&limitPrice=1000"

    def post(target: str, sent: str, signed: str, nonce: int) -> Any:
        headers = {"APIKey": FUT_KEY, "Nonce": str(nonce),
                   "Authent": sign_futures(SECRET, path, nonce, signed),
                   "Content-Type": "application/x-www-form-urlencoded"}
        return _request(kraken, "POST", target, sent, headers)[1]

    # ccxt: parameters in the query string, no body; the SDK: a body (and maybe a query).
    assert post(f"{path}?{query}&{body}", "", f"{query}&{body}", 1)["result"] == "success"
    assert post(path, body, body, 2)["result"] == "success"
    assert post(f"{path}?{query}", body, query + body, 3)["result"] == "success"
    # Signing only one of the two, or the body of another request, is refused.
    assert post(f"{path}?{query}", body, body, 4)["error"] == "authenticationError"
    assert post(f"{path}?{query}", body, query, 5)["error"] == "authenticationError"
    assert post(path, body, "side=sell&size=1&limitPrice=1000", 6)["error"] == (
        "authenticationError")


# --- as strict as Kraken's docs -----------------------------------------------------------------

def test_unknown_methods_and_endpoints_are_refused_as_kraken_refuses_them(
        kraken: StrictKraken) -> None:
    assert _spot(kraken, "Stake", 1) == ["EGeneral:Unknown method"]
    assert _spot(kraken, "balance", 2) == ["EGeneral:Unknown method"]  # case matters
    assert _spot(kraken, "Balance", 1) == []  # nothing of the refused ones was spent
    status, doc = _futures(kraken, "nosuchendpoint", "1", method="GET")
    assert (status, doc["result"]) == (404, "error")
    status, _ = _futures(kraken, "subaccount//trading-enabled", "2", method="GET")
    assert status == 404
    assert _futures(kraken, "accounts", "1", method="GET")[1]["result"] == "success"
    assert kraken.rejected() == {"EGeneral:Unknown method": 2, "unknown": 2}


def test_spot_nonce_is_an_unsigned_64_bit_integer(kraken: StrictKraken) -> None:
    assert _spot_raw_nonce(kraken, str(1 << 64)) == ["EAPI:Invalid nonce"]
    assert _spot_raw_nonce(kraken, "99999999999999999999") == ["EAPI:Invalid nonce"]
    assert _spot_raw_nonce(kraken, str((1 << 64) - 1)) == []


def _spot_raw_nonce(kraken: StrictKraken, nonce: str) -> list[str]:
    from botvault.exchanges.kraken import sign_spot_text

    path = "/0/private/Balance"
    body = f"nonce={nonce}"
    headers = {"API-Key": SPOT_KEY, "API-Sign": sign_spot_text(SECRET, path, nonce, body)}
    errors: list[str] = _request(kraken, "POST", path, body, headers)[1]["error"]
    return errors


def test_permissions_per_documented_endpoint(kraken: StrictKraken) -> None:
    kraken.add_key("none", SECRET, "spot", general="none")
    assert _spot(kraken, "GetApiKeyInfo", 1, key="none") == []  # Kraken: no permission
    assert _spot(kraken, "Balance", 2, key="none") == ["EGeneral:Permission denied"]
    assert _spot(kraken, "CreditLines", 1, key="reader") == []
    assert _spot(kraken, "Level3", 2, key="reader") == []
    assert _spot(kraken, "AccountTransfer", 1) == ["EGeneral:Permission denied"]
    kraken.add_key("withdrawer", SECRET, "spot", withdrawal="full")
    assert _spot(kraken, "AccountTransfer", 1, key="withdrawer") == []


def test_futures_reads_are_get_and_put_writes(kraken: StrictKraken) -> None:
    kraken.add_key("fut-reader", SECRET, "futures", general="read-only")

    def call(endpoint: str, nonce: str, method: str) -> Any:
        headers = {"APIKey": "fut-reader", "Nonce": nonce,
                   "Authent": sign_futures(SECRET, f"/api/v3/{endpoint}", nonce, "")}
        return _request(kraken, method, f"/derivatives/api/v3/{endpoint}", "", headers)[1]

    uid = "subaccount/7bd3e6d5-1c41-4a4b-9e9b-0a6f1e2c3d4e/trading-enabled"
    assert call("leveragepreferences", "1", "GET")["result"] == "success"
    assert call("leveragepreferences", "2", "PUT")["error"] == "authenticationError"
    assert call(uid, "3", "GET")["result"] == "success"
    assert call(uid, "4", "PUT")["error"] == "authenticationError"
    assert call("initialmargin", "5", "GET")["result"] == "success"


def test_batchorder_costs_nine_plus_its_size(kraken: StrictKraken, clock: Clock) -> None:
    batch = '{"batchOrder":[' + ",".join(['{"order":"send"}'] * 41) + "]}"
    post = urlencode({"json": batch})
    assert _futures(kraken, "batchorder", "1", post)[1]["result"] == "success"  # 50
    for n in range(2, 11):
        assert _futures(kraken, "batchorder", str(n), post)[1]["result"] == "success"
    status, doc = _futures(kraken, "batchorder", "11", post)
    assert (status, doc["error"]) == (429, "apiLimitExceeded")  # 10 x 50 = 500 spent


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_history_paths_are_served_and_signed_as_they_stand(kraken: StrictKraken,
                                                           version: str) -> None:
    path = f"/api/history/{version}/account-log"
    headers = {"APIKey": FUT_KEY, "Nonce": "7",
               "Authent": sign_futures(SECRET, path, "7", "since=1")}
    assert _request(kraken, "GET", path + "?since=1", "", headers)[1]["result"] == "success"
    assert _request(kraken, "GET", f"/api/history/{version}/nothing", "",
                    headers)[0] == 404


def test_a_dropped_answer_was_executed_and_closes_the_connection(kraken: StrictKraken) -> None:
    import http.client

    kraken.drop_after.add("AddOrder")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _spot(kraken, "AddOrder", 1)
    assert kraken.outcomes["ok"] == 1
    assert kraken.outcomes["answer-lost"] == 1

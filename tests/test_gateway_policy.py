"""Grant policies attacked end to end: `botvault gateway` as a real process, the real agent
(which enforces the policy), the strict Kraken stand-in, and the real client libraries
(ccxt, python-kraken-sdk, krakenex). An allowed order reaches the stand-in; a refused one
never does, and the client raises its permission error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from botvault import Vault
from botvault.audit import read_audit
from botvault.exchanges.kraken import sign_futures, sign_spot
from botvault.grant_ops import add_grant
from botvault.trading_policy import Policy

from .agent_support import eventually
from .gateway_stack import (
    Credential,
    Stack,
    ccxt_futures,
    gateway_stack,
    start_gateway,
    stop_gateway,
)
from .kraken_server import http_json

ADD = "/0/private/AddOrder"
SEND = "/derivatives/api/v3/sendorder"
SPOT_POLICY = Policy(pairs=("XBTUSD",), order_types=("limit",), max_order_volume=Decimal(1),
                     max_order_notional=Decimal(1000), max_daily_notional=Decimal(100000))
FUT_POLICY = Policy(pairs=("PF_XBTUSD",), max_order_volume=Decimal(5),
                    max_order_notional=Decimal(10000), reduce_only=True)
GOOD = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "1000",
        "volume": "0.01"}


@pytest.fixture
def stack(vault_path: Path) -> Iterator[Stack]:
    with gateway_stack(vault_path) as s:
        yield s


def grant(stack: Stack, bot: str, entry: str, policy: Policy) -> Credential:
    with Vault.open_with_key(stack.keys.path, stack.keys.data_key) as vault:
        made = add_grant(vault, bot, entry=entry, general="full", withdrawal="none",
                         policy=policy)
    return Credential(made.api_key, made.api_secret.reveal())


def spot(url: str, cred: Credential, method: str, fields: dict[str, str], *, nonce: int = 1,
         query: str = "") -> Any:
    path = f"/0/private/{method}"
    # From the clock (microseconds): the agent accepts a grant-signed request once, while
    # its nonce is recent; `nonce` keeps this call's apart from its neighbours'.
    nonce = time.time_ns() // 1000 + nonce
    body = urlencode({"nonce": nonce, **fields})
    return http_json(url, "POST", path + (f"?{query}" if query else ""), body, {
        "API-Key": cred.api_key, "API-Sign": sign_spot(cred.api_secret, path, nonce, body),
        "Content-Type": "application/x-www-form-urlencoded"})[1]


def futures(url: str, cred: Credential, endpoint: str, fields: dict[str, str]) -> Any:
    path = f"/derivatives/api/v3/{endpoint}"
    body = urlencode(fields)
    nonce = str(time.time_ns() // 1000)
    return http_json(url, "POST", path, body, {
        "APIKey": cred.api_key, "Nonce": nonce,
        "Authent": sign_futures(cred.api_secret, path, nonce, body),
        "Content-Type": "application/x-www-form-urlencoded"})[1]


def reached(stack: Stack, path: str) -> int:
    return stack.kraken.paths[path]


def test_ccxt_sdk_and_krakenex_on_spot(stack: Stack) -> None:
    ccxt = pytest.importorskip("ccxt")
    krakenex = pytest.importorskip("krakenex")
    from kraken.exceptions import KrakenPermissionDeniedError
    from kraken.spot import Trade

    one, two, three = (grant(stack, b, "spot", SPOT_POLICY) for b in ("c", "s", "k"))
    exchange = ccxt.kraken({"apiKey": one.api_key, "secret": one.api_secret,
                            "urls": {"api": {"public": stack.url, "private": stack.url}}})
    assert exchange.private_post_addorder(dict(GOOD))["result"]["txid"]
    for bad, rule_text in (({"volume": "2"}, "volume 2 above 1"),
                           ({"volume": "1", "price": "2000"}, "notional 2000 above 1000"),
                           ({"ordertype": "market"}, "order type 'market' not in grant policy"),
                           ({"price": "+5"}, "price is not bounded"),
                           ({"volume": "1e-2"}, "not a plain decimal"),
                           ({"pair": "ETHUSD"}, "is not in Kraken's list")):
        with pytest.raises(ccxt.PermissionDenied) as caught:
            exchange.private_post_addorder({**GOOD, **bad})
        assert rule_text in str(caught.value)
    assert reached(stack, ADD) == 1

    trade = Trade(two.api_key, two.api_secret, url=stack.url)
    assert trade.create_order(ordertype="limit", side="buy", pair="XXBTZUSD", volume="0.01",
                              price="1000")["txid"]  # an alias of XBTUSD
    with pytest.raises(KrakenPermissionDeniedError):
        trade.create_order(ordertype="limit", side="buy", pair="XBTUSD", volume="5",
                           price="10")
    assert reached(stack, ADD) == 2

    api = krakenex.API(three.api_key, three.api_secret)
    api.uri = stack.url
    assert api.query_private("AddOrder", {**GOOD, "pair": "XBT/USD"})["error"] == []
    refused = api.query_private("AddOrder", {**GOOD, "ordertype": "stop-loss",
                                             "price": "900"})
    assert refused["error"] == ["EGeneral:Permission denied", "EGeneral:Permission denied:"
                                "grant policy: order type 'stop-loss' not in grant policy"]
    assert reached(stack, ADD) == 3

    def outcomes() -> list[str]:  # the audit writer is another process: lines come soon
        return [r["outcome"] for r in read_audit(stack.keys.path) if r.get("endpoint") == ADD]

    assert eventually(lambda: len(outcomes()) == 11)
    assert outcomes().count("forwarded") == 3
    assert {"policy:order-volume", "policy:order-notional", "policy:order-type",
            "policy:unbounded-price", "policy:unreadable", "policy:unknown-pair"} <= \
        set(outcomes())


def test_a_batch_with_one_bad_order_sends_nothing(stack: Stack) -> None:
    ccxt = pytest.importorskip("ccxt")
    cred = grant(stack, "batch", "spot", SPOT_POLICY)
    exchange = ccxt.kraken({"apiKey": cred.api_key, "secret": cred.api_secret,
                            "urls": {"api": {"public": stack.url, "private": stack.url}}})
    order = {k: v for k, v in GOOD.items() if k != "pair"}
    with pytest.raises(ccxt.PermissionDenied):
        exchange.private_post_addorderbatch({"pair": "XBTUSD", "orders": [
            order, {**order, "volume": "3"}]})
    assert reached(stack, "/0/private/AddOrderBatch") == 0
    exchange.private_post_addorderbatch({"pair": "XBTUSD", "orders": [order, order]})
    assert reached(stack, "/0/private/AddOrderBatch") == 1


def test_futures_through_ccxt_and_the_sdk(stack: Stack) -> None:
    ccxt = pytest.importorskip("ccxt")
    kraken_futures = pytest.importorskip("kraken.futures")
    one, two = grant(stack, "cf", "fut", FUT_POLICY), grant(stack, "sf", "fut", FUT_POLICY)
    base = stack.url
    exchange = ccxt_futures(base, one)
    good = {"orderType": "lmt", "symbol": "PF_XBTUSD", "side": "sell", "size": 1,
            "limitPrice": 1000, "reduceOnly": "true"}
    assert exchange.private_post_sendorder(dict(good))["sendStatus"]["status"] == "placed"
    for bad in ({"reduceOnly": "false"}, {"size": 6}, {"orderType": "mkt"},
                {"symbol": "PF_ETHUSD"}, {"limitPrice": 20000}):
        with pytest.raises(ccxt.AuthenticationError) as caught:
            exchange.private_post_sendorder({**good, **bad})
        assert "grant policy" in str(caught.value)
    trade = kraken_futures.Trade(two.api_key, two.api_secret, url=base)
    assert trade.create_order(orderType="lmt", side="sell", size=1, symbol="pf_xbtusd",
                              limitPrice=1000, reduceOnly=True)["result"] == "success"
    from kraken.exceptions import KrakenAuthenticationError

    with pytest.raises(KrakenAuthenticationError) as caught:
        trade.create_order(orderType="lmt", side="sell", size=1, symbol="PF_XBTUSD",
                           limitPrice=1000)
    assert "reduce-only" in str(caught.value)
    batch = {"batchOrder": [
        {"order": "send", "order_tag": "1", "orderType": "lmt", "symbol": "PF_XBTUSD",
         "side": "sell", "size": 1, "limitPrice": 1000, "reduceOnly": True},
        {"order": "send", "order_tag": "2", "orderType": "lmt", "symbol": "PF_XBTUSD",
         "side": "sell", "size": 9, "limitPrice": 1000, "reduceOnly": True}]}
    answer = futures(base, two, "batchorder", {"json": json.dumps(batch)})
    assert answer["error"] == "authenticationError" and "volume 9 above 5" in answer["message"]
    answer = futures(base, two, "editorder", {"orderId": "never-seen", "size": "1"})
    assert "did not place" in answer["message"]
    assert reached(stack, SEND) == 2
    assert reached(stack, "/derivatives/api/v3/batchorder") == 0
    assert reached(stack, "/derivatives/api/v3/editorder") == 0


def test_the_daily_budget_survives_a_gateway_restart(stack: Stack) -> None:
    cred = grant(stack, "daily", "spot", Policy(max_daily_notional=Decimal(25)))
    for nonce in (1, 2):
        assert spot(stack.url, cred, "AddOrder", GOOD, nonce=nonce)["error"] == []
    assert stop_gateway(stack.gateway) == 0
    again, url = start_gateway(stack.keys.path, stack.kraken.url)
    try:
        answer = spot(url, cred, "AddOrder", GOOD, nonce=3)
        assert answer["error"][1] == ("EGeneral:Permission denied:grant policy: daily "
                                      "notional 30 above 25 (spent today 20)")
        half = {**GOOD, "volume": "0.005"}
        assert spot(url, cred, "AddOrder", half, nonce=4)["error"] == []
        assert reached(stack, ADD) == 3
    finally:
        assert stop_gateway(again) == 0
        for stream in (again.stdout, again.stderr):
            if stream is not None:
                stream.close()


def test_what_the_agent_cannot_see_is_refused(stack: Stack) -> None:
    cred = grant(stack, "blind", "spot", Policy(max_order_volume=Decimal(1)))
    # Order parameters in the query string beside the body: Kraken might read either.
    # (The gateway refuses it for every grant: only signed bytes travel.)
    answer = spot(stack.url, cred, "AddOrder", GOOD, query="volume=100")
    assert answer["error"][0] == "EGeneral:Invalid arguments"
    # A websocket token would let the bot place orders where no policy looks.
    answer = spot(stack.url, cred, "GetWebSocketsToken", {})
    assert "out of the policy's sight" in answer["error"][1]
    # Two readings of one field.
    answer = spot(stack.url, cred, "AddOrder", {**GOOD, "Volume": "100"})
    assert "given twice" in answer["error"][1]
    assert reached(stack, ADD) == 0 and reached(stack, "/0/private/GetWebSocketsToken") == 0
    plain = stack.grant("plain", "spot")  # no policy: exactly as before
    assert spot(stack.url, plain, "AddOrder", {**GOOD, "volume": "100"})["error"] == []
    assert spot(stack.url, plain, "GetWebSocketsToken", {})["error"] == []


def test_edits_of_orders_the_grant_placed_are_judged_against_them(stack: Stack) -> None:
    from kraken.exceptions import KrakenPermissionDeniedError
    from kraken.spot import Trade

    cred = grant(stack, "editor", "spot", SPOT_POLICY)
    trade = Trade(cred.api_key, cred.api_secret, url=stack.url)
    (txid,) = trade.create_order(ordertype="limit", side="buy", pair="XBTUSD",
                                 volume="0.5", price="1000")["txid"]
    # Kraken's id, learnt from the answer: the edit keeps the pair and the type it knows.
    assert spot(stack.url, cred, "AmendOrder", {"txid": txid, "limit_price": "1500"},
                nonce=2)["error"] == []
    answer = spot(stack.url, cred, "AmendOrder", {"txid": txid, "limit_price": "2500"}, nonce=3)
    assert answer["error"][1].endswith("notional 1250 above 1000")
    with pytest.raises(KrakenPermissionDeniedError):
        trade.edit_order(txid=txid, pair="XBTUSD", volume="1.5")
    answer = spot(stack.url, cred, "AmendOrder", {"txid": "OTHER-ORDER", "order_qty": "0.1"},
                  nonce=4)
    assert "did not place" in answer["error"][1]
    assert reached(stack, "/0/private/AmendOrder") == 1
    assert reached(stack, "/0/private/EditOrder") == 0

"""The pure policy core: numbers, parameters, requests, rules (no agent, no sockets)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botvault.errors import FormatError, InvalidInputError
from botvault.trading_policy import Policy, Refused, parse_policy
from botvault.trading_policy.check import judge
from botvault.trading_policy.decimals import BadNumber, Relative, parse_amount, parse_price
from botvault.trading_policy.memory import OrderMemory
from botvault.trading_policy.orders import read_request

SPOT, FUT = "kraken-spot", "kraken-futures"
ALIASES = {n: ["XXBTZUSD", "XBTUSD", "XBT/USD"] for n in ("XXBTZUSD", "XBTUSD", "XBT/USD")}
ALIASES.update({n: ["XETHZUSD", "ETHUSD", "ETH/USD"] for n in ("XETHZUSD", "ETHUSD", "ETH/USD")})


def run(policy: Policy, exchange: str, path: str, params: Mapping[str, object], *,
        content_type: str = "form", aliases: dict[str, list[str]] | None = None,
        memory: OrderMemory | None = None) -> Decimal:
    body = json.dumps(params) if content_type == "json" else urlencode(params)
    orders, funds = read_request(exchange, path, body, content_type)
    mem = memory or OrderMemory()
    verdict = judge(policy, exchange, orders, funds, aliases, lambda ref: mem.recall("bot", ref))
    for held, now in verdict.updates:
        held.order = now
    return verdict.charge


def refused(rule: str, *args: object, **kw: object) -> str:
    with pytest.raises(Refused) as caught:
        run(*args, **kw)  # type: ignore[arg-type]
    assert caught.value.rule == rule, caught.value.message
    return caught.value.message


CAPS = Policy(pairs=("XBTUSD",), order_types=("limit", "stop-loss-limit"),
              max_order_volume=Decimal("2"), max_order_notional=Decimal("1000"))
ADD = "/0/private/AddOrder"


@pytest.mark.parametrize("text", ["1e3", "0x10", "+5", "5%", " 5", "5 ", "1_000", "\u0661\u0660",
                                  "NaN", "inf", "-1", ".5", "5.", "1,5", "", "1" * 41,
                                  "\uff11", "5\x00"])
def test_amounts_refuse_every_second_reading(text: str) -> None:
    with pytest.raises(BadNumber):
        parse_amount(text, "volume")


def test_amounts_and_prices_as_kraken_reads_them() -> None:
    assert parse_amount("007.50", "v") == Decimal("7.5")
    assert parse_price("+5", "price") == Relative("+5")
    assert parse_price("#5%", "price") == Relative("#5%")
    assert parse_price("100.5", "price") == Decimal("100.5")
    for bad in ("+5%%", "5%+", "++5", "+-5", "1e3%", "%5"):
        with pytest.raises(BadNumber):
            parse_price(bad, "price")


def test_allowed_limit_order_charges_its_notional() -> None:
    assert run(CAPS, SPOT, ADD, {"pair": "XBTUSD", "ordertype": "limit", "type": "buy",
                                 "volume": "1", "price": "900"}) == Decimal(900)


def test_each_rule_refuses_with_its_message() -> None:
    base = {"pair": "XBTUSD", "ordertype": "limit", "type": "buy", "volume": "1",
            "price": "900"}
    assert refused("pair", CAPS, SPOT, ADD, {**base, "pair": "ETHUSD"}) == \
        "pair not in grant policy"
    refused("order-type", CAPS, SPOT, ADD, {**base, "ordertype": "iceberg"})
    assert refused("order-volume", CAPS, SPOT, ADD, {**base, "volume": "3"}) == \
        "volume 3 above 2"
    assert refused("order-notional", CAPS, SPOT, ADD, {**base, "volume": "2",
                                                       "price": "1000"}) == \
        "notional 2000 above 1000"
    refused("unbounded-price", CAPS, SPOT, ADD, {**base, "price": "+5"})
    refused("unbounded-price", CAPS, SPOT, ADD, {**base, "price": "#5%"})
    refused("unreadable", CAPS, SPOT, ADD, {**base, "volume": "1e-3"})
    # stop-loss-limit: the limit is price2; the trigger (price) does not bound it
    refused("unbounded-price", CAPS, SPOT, ADD, {**base, "ordertype": "stop-loss-limit",
                                                 "price": "900", "price2": "+1"})
    assert run(CAPS, SPOT, ADD, {**base, "ordertype": "stop-loss-limit", "price": "1",
                                 "price2": "900"}) == Decimal(900)
    refused("unbounded-price", CAPS, SPOT, ADD, {**base, "close[ordertype]": "limit",
                                                 "close[price]": "1"})


def test_market_orders_under_a_notional_cap_are_refused() -> None:
    policy = Policy(max_order_notional=Decimal(1000))
    refused("unbounded-price", policy, SPOT, ADD, {"pair": "XBTUSD", "ordertype": "market",
                                                   "type": "sell", "volume": "0.001"})
    refused("unbounded-price", policy, FUT, "/api/v3/sendorder",
            {"orderType": "mkt", "symbol": "PF_XBTUSD", "side": "sell", "size": "1"})
    refused("unbounded-price", policy, FUT, "/api/v3/sendorder",
            {"orderType": "stp", "symbol": "PF_XBTUSD", "side": "sell", "size": "1",
             "stopPrice": "10"})
    # stop-limit (limitPrice given) is bounded; inverse contracts need no price
    assert run(policy, FUT, "/api/v3/sendorder", {
        "orderType": "stp", "symbol": "PF_XBTUSD", "side": "sell", "size": "1",
        "stopPrice": "10", "limitPrice": "9"}) == Decimal(9)
    assert run(policy, FUT, "/api/v3/sendorder", {
        "orderType": "mkt", "symbol": "PI_XBTUSD", "side": "sell", "size": "500"}) == 500


def test_without_notional_caps_market_orders_pass() -> None:
    assert run(Policy(pairs=("XBTUSD",)), SPOT, ADD, {
        "pair": "XBTUSD", "ordertype": "market", "type": "buy", "volume": "5"}) == 0


def test_aliases_are_one_pair_and_unknown_pairs_are_refused() -> None:
    order = {"ordertype": "limit", "type": "buy", "volume": "1", "price": "900"}
    for name in ("XXBTZUSD", "XBTUSD", "XBT/USD"):
        assert run(CAPS, SPOT, ADD, {**order, "pair": name}, aliases=ALIASES) == 900
    for name in ("XETHZUSD", "ETH/USD"):
        refused("pair", CAPS, SPOT, ADD, {**order, "pair": name}, aliases=ALIASES)
    refused("unknown-pair", CAPS, SPOT, ADD, {**order, "pair": "NOPEUSD"}, aliases=ALIASES)
    # without the public list only the policy's own spelling passes
    refused("pair", CAPS, SPOT, ADD, {**order, "pair": "XXBTZUSD"})


def test_a_batch_is_all_or_nothing() -> None:
    good = {"ordertype": "limit", "type": "buy", "volume": "1", "price": "900"}
    bad = {**good, "volume": "5"}
    batch = "/0/private/AddOrderBatch"
    assert run(CAPS, SPOT, batch, {"pair": "XBTUSD", "orders": [good, good]},
               content_type="json") == 1800
    refused("order-volume", CAPS, SPOT, batch, {"pair": "XBTUSD", "orders": [good, bad]},
            content_type="json")
    fut = Policy(max_order_volume=Decimal(1))
    instructions = {"batchOrder": [
        {"order": "send", "orderType": "lmt", "symbol": "PF_XBTUSD", "side": "buy",
         "size": 1, "limitPrice": 10},
        {"order": "send", "orderType": "lmt", "symbol": "PF_XBTUSD", "side": "buy",
         "size": 2, "limitPrice": 10},
        {"order": "cancel", "order_id": "x"}]}
    refused("order-volume", fut, FUT, "/api/v3/batchorder",
            {"json": json.dumps(instructions)})
    instructions["batchOrder"][1]["size"] = "1e0"  # type: ignore[index]
    refused("unreadable", fut, FUT, "/api/v3/batchorder", {"json": json.dumps(instructions)})


def test_ambiguous_parameters_are_refused() -> None:
    for body in ("pair=XBTUSD&volume=1&volume=100", "pair=XBTUSD&volume=1&Volume=100",
                 "pair=XBTUSD&vol%75me=1&volume=2", "volume"):
        with pytest.raises(Refused) as caught:
            read_request(SPOT, ADD, body, "form")
        assert caught.value.rule == "unreadable"
    for body in ('{"volume": "1", "volume": "9"}', '{"volume": NaN}', '[1]', '{"volume": 1e3}'):
        with pytest.raises(Refused):
            _judge_json(body)


def _judge_json(body: str) -> Decimal:
    orders, funds = read_request(SPOT, ADD, body, "json")
    return judge(Policy(max_order_volume=Decimal(5)), SPOT, orders, funds, None,
                 lambda _r: []).charge


def test_edits_need_the_remembered_order() -> None:
    memory = OrderMemory()
    amend = "/0/private/AmendOrder"
    refused("edit-unknown-order", CAPS, SPOT, amend, {"txid": "OABC", "order_qty": "1"})
    body = urlencode({"pair": "XBTUSD", "ordertype": "limit", "type": "buy", "volume": "1",
                      "price": "900", "cl_ord_id": "c1"})
    orders, _ = read_request(SPOT, ADD, body, "form")
    memory.remember("bot", "client:c1", orders[0])
    assert run(CAPS, SPOT, amend, {"cl_ord_id": "c1", "limit_price": "950"},
               memory=memory) == 50  # the increase only
    refused("order-notional", CAPS, SPOT, amend, {"cl_ord_id": "c1", "order_qty": "2",
                                                  "limit_price": "999"}, memory=memory)
    refused("unbounded-price", CAPS, SPOT, amend, {"cl_ord_id": "c1", "limit_price": "+1"},
            memory=memory)
    memory.link("bot", "client:c1", "order:OXYZ")
    refused("order-volume", CAPS, SPOT, "/0/private/EditOrder",
            {"txid": "OXYZ", "pair": "XBTUSD", "volume": "9"}, memory=memory)
    refused("pair", CAPS, SPOT, "/0/private/EditOrder",
            {"txid": "OXYZ", "pair": "ETHUSD", "volume": "1"}, memory=memory)
    refused("edit-unknown-order", Policy(max_order_volume=Decimal(1)), FUT,
            "/api/v3/editorder", {"orderId": "o1", "size": "1"})


def test_funds() -> None:
    policy = Policy(withdraw_keys=("cold",), max_withdraw_amount=Decimal("0.5"))
    run(policy, SPOT, "/0/private/Withdraw", {"asset": "XBT", "key": "cold", "amount": "0.5"})
    refused("withdraw-key", policy, SPOT, "/0/private/Withdraw",
            {"asset": "XBT", "key": "hot", "amount": "0.1"})
    assert refused("withdraw-amount", policy, SPOT, "/0/private/Withdraw",
                   {"asset": "XBT", "key": "cold", "amount": "0.6"}) == "amount 0.6 above 0.5"
    refused("withdraw-key", policy, SPOT, "/0/private/AccountTransfer",
            {"asset": "XBT", "amount": "0.1", "from": "a", "to": "b"})
    run(policy, SPOT, "/0/private/WalletTransfer", {"asset": "XBT", "amount": "0.1",
                                                    "from": "Spot Wallet", "to": "Futures"})
    refused("withdraw-amount", policy, FUT, "/api/v3/withdrawal",
            {"currency": "xbt", "amount": "1"})
    refused("withdraw-amount", policy, FUT, "/api/v3/transfer",
            {"fromAccount": "a", "toAccount": "b", "unit": "xbt", "amount": "1"})


def test_reduce_only() -> None:
    policy = Policy(reduce_only=True)
    order = {"orderType": "lmt", "symbol": "PF_XBTUSD", "side": "sell", "size": "1",
             "limitPrice": "10"}
    refused("reduce-only", policy, FUT, "/api/v3/sendorder", order)
    refused("unreadable", policy, FUT, "/api/v3/sendorder", {**order, "reduceOnly": "yes"})
    run(policy, FUT, "/api/v3/sendorder", {**order, "reduceOnly": "true"})


def test_policy_round_trip_and_cli_parsing() -> None:
    policy = parse_policy({"pairs": "XBTUSD,ETHUSD", "order_types": "limit",
                           "max_order_volume": "0.10", "max_daily_notional": "5000",
                           "reduce_only": True})
    assert Policy.from_doc(json.loads(json.dumps(policy.to_doc()))) == policy
    assert Policy().to_doc() is None and Policy.from_doc(None).empty
    widened = parse_policy({"pairs": "none", "max_order_volume": "1"}, base=policy)
    assert widened.pairs is None and widened.max_order_volume == 1
    for bad in ({"max_order_volume": "1e3"}, {"max_order_notional": "0"},
                {"order_types": "limit,yolo"}, {"pairs": "XBT USD"}):
        with pytest.raises(InvalidInputError):
            parse_policy(bad)
    with pytest.raises(FormatError):
        Policy.from_doc({"max_order_volume": "1e3"})
    with pytest.raises(FormatError):
        Policy.from_doc({"surprise": 1})


_DIGITS = st.text(st.sampled_from("0123456789"), min_size=1, max_size=6)
_NUMBER = st.one_of(
    _DIGITS, st.builds(lambda a, b: f"{a}.{b}", _DIGITS, _DIGITS),
    st.sampled_from(["1e3", "0x10", "+5%", "#5", "-5", "00010", "\u0661\u0660", "1E2", "inf", "NaN",
                     " 1", "1.", ".1", "0b11", "1_0", "\u0661"]),
    st.text(max_size=8))


def _kraken_reads(text: str) -> Decimal | None:
    """The largest value any reader could see in `text` (None: no plain decimal)."""
    import re

    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return None
    return Decimal(text)


@settings(max_examples=400, deadline=None)
@given(volume=_NUMBER, price=_NUMBER, kind=st.sampled_from(["limit", "market", "iceberg",
                                                           "stop-loss-limit", "stop-loss"]),
       price2=_NUMBER)
def test_no_accepted_order_exceeds_its_caps(volume: str, price: str, kind: str,
                                            price2: str) -> None:
    policy = Policy(max_order_volume=Decimal(2), max_order_notional=Decimal(1000))
    params = {"pair": "XBTUSD", "type": "buy", "ordertype": kind, "volume": volume,
              "price": price, "price2": price2}
    for content_type in ("form", "json"):
        try:
            charge = run(policy, SPOT, ADD, params, content_type=content_type)
        except Refused:
            continue
        vol = _kraken_reads(volume)
        limit = _kraken_reads(price2 if kind == "stop-loss-limit" else price)
        assert kind in ("limit", "iceberg", "stop-loss-limit")
        assert vol is not None and limit is not None
        assert vol <= 2 and vol * limit <= 1000 and charge == vol * limit


@settings(max_examples=200, deadline=None)
@given(size=_NUMBER, price=_NUMBER, as_number=st.booleans())
def test_no_accepted_futures_batch_exceeds_its_caps(size: str, price: str,
                                                    as_number: bool) -> None:
    policy = Policy(max_order_volume=Decimal(2), max_order_notional=Decimal(1000))
    item = {"order": "send", "orderType": "lmt", "symbol": "PF_XBTUSD", "side": "buy",
            "size": size, "limitPrice": price}
    text = json.dumps({"batchOrder": [item]})
    if as_number:  # the same strings as bare JSON numbers, as some clients send them
        text = text.replace(f'"size": {json.dumps(size)}', f'"size": {size}')
    try:
        run(policy, FUT, "/api/v3/batchorder", {"json": text})
    except Refused:
        return
    # A bare JSON number is the token between JSON's own whitespace.
    vol, limit = _kraken_reads(size.strip(" \t\n\r") if as_number else size), \
        _kraken_reads(price)
    assert vol is not None and limit is not None and vol <= 2 and vol * limit <= 1000


def test_an_edit_is_judged_against_the_order_as_the_last_edit_left_it() -> None:
    memory = OrderMemory()
    policy = Policy(max_order_notional=Decimal(150))
    body = urlencode({"pair": "XBTUSD", "ordertype": "limit", "type": "buy", "volume": "1",
                      "price": "100", "cl_ord_id": "c1"})
    orders, _ = read_request(SPOT, ADD, body, "form")
    memory.remember("bot", "client:c1", orders[0])
    amend = "/0/private/AmendOrder"
    run(policy, SPOT, amend, {"cl_ord_id": "c1", "limit_price": "150"}, memory=memory)
    # 1.5 x 150, not 1.5 x the price the order was placed at
    assert refused("order-notional", policy, SPOT, amend, {"cl_ord_id": "c1",
                                                          "order_qty": "1.5"},
                   memory=memory) == "notional 225 above 150"
    # AmendOrder reads order_qty and limit_price only: a `volume` or `price` beside them
    # does not lower what is judged
    refused("order-notional", policy, SPOT, amend, {"cl_ord_id": "c1", "order_qty": "2",
                                                   "price": "1", "volume": "0.1"},
            memory=memory)


def test_spellings_that_would_widen_an_order_are_refused() -> None:
    caps = Policy(order_types=("limit",), max_order_volume=Decimal(1),
                  max_order_notional=Decimal(1000))
    base = {"pair": "XBTUSD", "ordertype": "limit", "type": "buy", "volume": "1",
            "price": "100"}
    assert "whole position" in refused("order-volume", caps, SPOT, ADD, {**base,
                                                                        "volume": "0"})
    refused("order-volume", caps, SPOT, ADD, {**base, "oflags": "post,VIQC"})
    refused("order-type", caps, SPOT, ADD, {**base, "close[ordertype]": "market"})
    refused("order-type", Policy(order_types=("limit",)), SPOT, "/0/private/AddOrderBatch",
            {"pair": "XBTUSD", "orders": [{**{k: v for k, v in base.items() if k != "pair"},
                                           "close": {"ordertype": "stop-loss"}}]},
            content_type="json")


def test_kraken_ids_follow_an_order_through_edits(tmp_path: Path) -> None:
    from botvault.errors import PolicyError
    from botvault.trading_gate import PolicyGate

    gate = PolicyGate(tmp_path / "v.bv")
    policy = Policy(max_order_notional=Decimal(150))

    def enforce(path: str, fields: dict[str, str], nonce: int) -> None:
        placed = gate.enforce("bot", policy, SPOT, path, "POST", urlencode(fields), "form",
                              None)
        gate.signed("bot", nonce, placed)

    enforce(ADD, {"pair": "XBTUSD", "ordertype": "limit", "type": "buy", "volume": "1",
                  "price": "100"}, 5)
    gate.learn("bot", 5, ["O-FIRST"])
    enforce("/0/private/EditOrder", {"txid": "O-FIRST", "pair": "XBTUSD", "price": "140"}, 6)
    gate.learn("bot", 6, ["O-SECOND"])  # EditOrder's answer: the order's new txid
    with pytest.raises(PolicyError) as caught:
        enforce("/0/private/AmendOrder", {"txid": "O-SECOND", "order_qty": "1.1"}, 7)
    assert caught.value.message == "grant policy: notional 154 above 150"
    with pytest.raises(PolicyError) as caught:
        enforce("/0/private/AmendOrder", {"txid": "O-NEVER", "order_qty": "0.1"}, 8)
    assert caught.value.rule == "edit-unknown-order"


def test_endpoints_out_of_the_policys_sight_are_refused(tmp_path: Path) -> None:
    from botvault.errors import PolicyError
    from botvault.trading_gate import PolicyGate

    gate = PolicyGate(tmp_path / "v.bv")
    policy = Policy(max_order_volume=Decimal(1))
    for exchange, path in ((SPOT, "/0/private/AddOrderNew"),
                           (SPOT, "/0/private/GetWebSocketsToken"),
                           (FUT, "/derivatives/api/v3/assignmentprogram/add"),
                           (FUT, "/derivatives/api/v3/sendorder2")):
        with pytest.raises(PolicyError) as caught:
            gate.enforce("bot", policy, exchange, path, "POST", "", "form", None)
        assert caught.value.rule == "endpoint"
    # reads and cancels pass; a grant without a policy is not looked at
    gate.enforce("bot", policy, SPOT, "/0/private/CancelOrder", "POST", "txid=x", "form", None)
    gate.enforce("bot", Policy(), SPOT, "/0/private/GetWebSocketsToken", "POST", "", "form",
                 None)

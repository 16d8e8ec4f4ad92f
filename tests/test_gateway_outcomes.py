"""Outcomes are honest, per client: the real gateway and agent in front of the strict stand-in,
driven by ccxt (sync and async), python-kraken-sdk and krakenex.

- refused before it left (a read-only grant placing an order): Kraken's own refusal, nothing
  reaches the exchange;
- sent and answered: the exchange's answer;
- sent and the answer lost (the stand-in executes the order and kills the connection): each
  client raises its "outcome unknown" error (ccxt `RequestTimeout`), never
  `ExchangeNotAvailable` / `EService:Unavailable`, and the audit line says `outcome unknown`;
- the gateway's own rate refusal: each client's rate-limit class.

`python -m tests.test_gateway_outcomes` prints the matrix (markdown) for the gateway docs.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import krakenex
import pytest
from kraken.futures import Trade as FuturesTrade
from kraken.spot import Trade as SpotTrade
from kraken.spot import User as SpotUser

from botvault.audit import read_audit

from .gateway_stack import Credential, Stack, gateway_stack, stop_gateway

pytestmark = pytest.mark.slow

ENTRIES = {
    "spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"},
    "fut": {"exchange": "kraken-futures", "general": "full", "withdrawal": "none"},
}
SPOT_ORDER = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "1000",
              "volume": "0.01"}
FUTURES_ORDER = {"orderType": "lmt", "symbol": "PF_XBTUSD", "side": "buy", "size": 1,
                 "limitPrice": 1000}

Call = Callable[[], Any]


def _futures_urls(url: str) -> dict[str, str]:
    return {"public": f"{url}/derivatives/api/", "private": f"{url}/derivatives/api/"}


def _ccxt_async(cls: Any, cred: Credential, urls: dict[str, str], method: str,
                params: dict[str, Any]) -> Any:
    async def run() -> Any:
        exchange = cls({"apiKey": cred.api_key, "secret": cred.api_secret,
                        "urls": {"api": urls}, "enableRateLimit": False})
        try:
            return await getattr(exchange, method)(dict(params))
        finally:
            await exchange.close()
    return asyncio.run(run())


# client -> (order call, read call), each made for one credential against the gateway at url.
def _clients(url: str) -> dict[str, Callable[[Credential], tuple[Call, Call]]]:
    def ccxt_spot(c: Credential) -> tuple[Call, Call]:
        # ccxt's own throttle off: it would space calls 3 s apart, beyond the agent's TTL here.
        ex = ccxt.kraken({"apiKey": c.api_key, "secret": c.api_secret, "enableRateLimit": False,
                          "urls": {"api": {"public": url, "private": url}}})
        return (lambda: ex.private_post_addorder(dict(SPOT_ORDER)),
                ex.private_post_balance)

    def ccxt_async_spot(c: Credential) -> tuple[Call, Call]:
        urls = {"public": url, "private": url}
        return (lambda: _ccxt_async(ccxt_async.kraken, c, urls, "private_post_addorder",
                                    SPOT_ORDER),
                lambda: _ccxt_async(ccxt_async.kraken, c, urls, "private_post_balance", {}))

    def sdk_spot(c: Credential) -> tuple[Call, Call]:
        trade, user = SpotTrade(c.api_key, c.api_secret, url=url), \
            SpotUser(c.api_key, c.api_secret, url=url)
        return (lambda: trade.create_order(ordertype="limit", side="buy", pair="XBTUSD",
                                           volume="0.01", price="1000"),
                user.get_account_balance)

    def krakenex_spot(c: Credential) -> tuple[Call, Call]:
        api = krakenex.API(c.api_key, c.api_secret)
        api.uri = url
        return (lambda: api.query_private("AddOrder", dict(SPOT_ORDER)),
                lambda: api.query_private("Balance"))

    def ccxt_futures(c: Credential) -> tuple[Call, Call]:
        ex = ccxt.krakenfutures({"apiKey": c.api_key, "secret": c.api_secret,
                                 "enableRateLimit": False,
                                 "urls": {"api": _futures_urls(url)}})
        return (lambda: ex.private_post_sendorder(dict(FUTURES_ORDER)),
                lambda: ex.private_post_sendorder(dict(FUTURES_ORDER)))

    def ccxt_async_futures(c: Credential) -> tuple[Call, Call]:
        urls = _futures_urls(url)

        def order() -> Any:
            return _ccxt_async(ccxt_async.krakenfutures, c, urls, "private_post_sendorder",
                               FUTURES_ORDER)

        def orders() -> Any:
            # 60 at once in one loop: one by one, each new loop and exchange takes longer
            # than the 10 units an order costs take to refill on a loaded machine.
            async def run() -> Any:
                exchange = ccxt_async.krakenfutures({
                    "apiKey": c.api_key, "secret": c.api_secret, "urls": {"api": urls},
                    "enableRateLimit": False})
                try:
                    got = await asyncio.gather(*(
                        exchange.private_post_sendorder(dict(FUTURES_ORDER))
                        for _ in range(60)), return_exceptions=True)
                finally:
                    await exchange.close()
                for item in got:
                    if isinstance(item, Exception):
                        raise item
                return got[-1]
            return asyncio.run(run())
        return order, orders

    def sdk_futures(c: Credential) -> tuple[Call, Call]:
        trade = FuturesTrade(c.api_key, c.api_secret, url=url)

        def order() -> Any:
            return trade.create_order(orderType="lmt", side="buy", size=1,
                                      symbol="PF_XBTUSD", limitPrice=1000)
        return order, order

    return {"ccxt kraken": ccxt_spot, "ccxt.async kraken": ccxt_async_spot,
            "python-kraken-sdk spot": sdk_spot, "krakenex": krakenex_spot,
            "ccxt krakenfutures": ccxt_futures, "ccxt.async krakenfutures": ccxt_async_futures,
            "python-kraken-sdk futures": sdk_futures}


SPOT_CLIENTS = ("ccxt kraken", "ccxt.async kraken", "python-kraken-sdk spot", "krakenex")
FUTURES_CLIENTS = ("ccxt krakenfutures", "ccxt.async krakenfutures",
                   "python-kraken-sdk futures")
DROPPED = {"spot": "AddOrder", "fut": "sendorder"}


def _bot(prefix: str, client: str) -> str:
    return f"{prefix}-" + client.replace(" ", "-").replace("python-kraken-sdk", "sdk")


def _entry(client: str) -> str:
    return "spot" if client in SPOT_CLIENTS else "fut"


def outcome(call: Call) -> tuple[str, str]:
    """(exception class or "answer", what it said), shortened."""
    try:
        answer = call()
    except Exception as exc:  # the point is which class each client raises
        said = " ".join(str(exc).split())[:90]
        return f"{type(exc).__module__.split('.')[0]}.{type(exc).__name__}", said
    return "answer", " ".join(str(answer).split())[:90]


# What each client must raise. krakenex raises nothing for API errors: it returns Kraken's doc.
EXPECTED = {
    "refused": {
        "ccxt kraken": "ccxt.PermissionDenied", "ccxt.async kraken": "ccxt.PermissionDenied",
        "python-kraken-sdk spot": "kraken.KrakenPermissionDeniedError",
        "krakenex": "answer",  # {"error": ["EGeneral:Permission denied"]}
        "ccxt krakenfutures": "ccxt.AuthenticationError",
        "ccxt.async krakenfutures": "ccxt.AuthenticationError",
        "python-kraken-sdk futures": "kraken.KrakenAuthenticationError",
    },
    "lost": {
        **dict.fromkeys(("ccxt kraken", "ccxt.async kraken", "ccxt krakenfutures",
                         "ccxt.async krakenfutures"), "ccxt.RequestTimeout"),
        # The SDK has no class for an answer that says "timed out": its non-200 answers are
        # a bare Exception("<status> - <body>"), here "504 - botvault: outcome unknown ...".
        "python-kraken-sdk spot": "builtins.Exception",
        "python-kraken-sdk futures": "builtins.Exception",
        "krakenex": "requests.HTTPError",  # 504 Gateway Timeout
    },
    "rate": {
        **dict.fromkeys(("ccxt kraken", "ccxt.async kraken", "ccxt krakenfutures",
                         "ccxt.async krakenfutures"), "ccxt.RateLimitExceeded"),
        "python-kraken-sdk spot": "kraken.KrakenApiLimitExceededError",
        "python-kraken-sdk futures": "kraken.KrakenApiLimitExceededError",
        "krakenex": "answer",  # {"error": ["EAPI:Rate limit exceeded:botvault"]}
    },
}


@pytest.fixture
def stack(vault_path: Path) -> Iterator[Stack]:
    # A short wait bound, so the gateway's own rate refusal comes quickly.
    with gateway_stack(vault_path, entries=ENTRIES, gateway_args=("--max-wait", "0.05")) as s:
        yield s


ALL = SPOT_CLIENTS + FUTURES_CLIENTS


def test_refused_before_it_left(stack: Stack) -> None:
    got = {}
    for client in ALL:
        reader = stack.grant(_bot("ro", client), _entry(client), general="read-only")
        got[client] = outcome(_clients(stack.url)[client](reader)[0])
    assert {c: kind for c, (kind, _) in got.items()} == EXPECTED["refused"], got
    assert "EGeneral:Permission denied" in got["krakenex"][1]
    assert stack.kraken.outcomes == {}  # nothing reached the exchange


def test_sent_and_answered(stack: Stack) -> None:
    got = {c: outcome(_clients(stack.url)[c](stack.grant(_bot("ok", c), _entry(c)))[0])
           for c in ALL}
    assert {c: kind for c, (kind, _) in got.items()} == dict.fromkeys(ALL, "answer"), got
    assert stack.kraken.outcomes == {"ok": len(ALL)}


def test_sent_and_the_answer_lost(stack: Stack) -> None:
    stack.kraken.drop_after.update(DROPPED.values())
    got = {c: outcome(_clients(stack.url)[c](stack.grant(_bot("lost", c), _entry(c)))[0])
           for c in ALL}
    assert {c: kind for c, (kind, _) in got.items()} == EXPECTED["lost"], got
    for kind, said in got.values():
        assert "ExchangeNotAvailable" not in kind and "Unavailable" not in said
        if kind == "builtins.Exception":
            assert said.startswith("504 - botvault: outcome unknown")
    # Each executed exactly once: told the outcome is unknown, no client retried it.
    assert stack.kraken.outcomes == {"ok": len(ALL), "answer-lost": len(ALL)}
    assert stop_gateway(stack.gateway) == 0  # flushes the audit writer
    lost = [r for r in read_audit(stack.keys.path) if str(r.get("grant", "")).startswith(
        "lost-")]
    assert [r["outcome"] for r in lost] == ["outcome unknown"] * len(ALL)


@pytest.mark.parametrize("clients", [SPOT_CLIENTS, FUTURES_CLIENTS])
def test_the_gateways_rate_refusal_is_each_clients_rate_class(
        stack: Stack, clients: tuple[str, ...]) -> None:
    got = {}
    for client in clients:
        _, read = _clients(stack.url)[client](stack.grant(_bot("rate", client), _entry(client)))
        for _ in range(80):  # pro tier: 20 Spot calls; Futures: 50 orders of 10 units
            kind, said = outcome(read)
            if kind != "answer" or "Rate limit" in said:
                break
        got[client] = (kind, said)
    assert {c: kind for c, (kind, _) in got.items()} == {
        c: EXPECTED["rate"][c] for c in clients}, got
    if "krakenex" in got:
        assert "EAPI:Rate limit exceeded" in got["krakenex"][1]
    assert set(stack.kraken.outcomes) == {"ok"}  # the exchange itself refused nothing


def main() -> None:
    """Print the outcome matrix (markdown) from a live run."""
    rows: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp, gateway_stack(
            Path(tmp) / "v.bv", entries=ENTRIES, gateway_args=("--max-wait", "0.05")) as stack:
        for client, make in _clients(stack.url).items():
            entry = _entry(client)
            row = rows.setdefault(client, {})
            reader = stack.grant(_bot("ro", client), entry, general="read-only")
            row["refused"] = "{}: {}".format(*outcome(make(reader)[0]))
            full = stack.grant(_bot("ok", client), entry)
            row["answered"] = outcome(make(full)[0])[0]
            stack.kraken.drop_after.add(DROPPED[entry])
            row["lost"] = "{}: {}".format(*outcome(make(full)[0]))
            stack.kraken.drop_after.clear()
    print("| client | refused before sent | sent, answered | sent, answer lost |")
    print("|---|---|---|---|")
    for client, row in rows.items():
        print(f"| {client} | {row['refused'][:70]} | {row['answered']} | {row['lost'][:70]} |")


if __name__ == "__main__":
    main()
    sys.exit(0)

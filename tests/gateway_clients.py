"""One bot process for the real-client tests: `python -m tests.gateway_clients CLIENT URL
COUNT`, with `[KEY, SECRET]` as a JSON line on stdin (never on argv), sends COUNT private
Spot requests with a real, unchanged client library whose only settings are its base URL and
its credentials, and prints a JSON tally of outcomes. Every 30th request reads the balance,
the others place an order (AddOrder is outside Kraken's REST counter; the balance reads are
counted)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any
from urllib.parse import urlencode

ORDER = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "1000",
         "volume": "0.01"}


def _errors_of(doc: Any) -> list[str]:
    errors = doc.get("error", []) if isinstance(doc, dict) else ["not-a-dict"]
    return [str(e) for e in errors]


def ccxt_calls(url: str, key: str, secret: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    ccxt = import_module("ccxt")  # untyped
    exchange = ccxt.kraken({"apiKey": key, "secret": secret,
                            "urls": {"api": {"public": url, "private": url}}})
    return (exchange.private_post_balance,
            lambda: exchange.private_post_addorder(dict(ORDER)))


def sdk_calls(url: str, key: str, secret: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    from kraken.spot import Trade, User

    user, trade = User(key, secret, url=url), Trade(key, secret, url=url)
    return (user.get_account_balance,
            lambda: trade.create_order(ordertype="limit", side="buy", pair="XBTUSD",
                                       volume="0.01", price="1000"))


def krakenex_calls(url: str, key: str, secret: str
                   ) -> tuple[Callable[[], Any], Callable[[], Any]]:
    import krakenex

    api = krakenex.API(key, secret)
    api.uri = url

    def call(method: str, data: dict[str, str] | None = None) -> Any:
        doc = api.query_private(method, data or {})
        if _errors_of(doc):
            raise RuntimeError(";".join(_errors_of(doc)))
        return doc

    return (lambda: call("Balance"), lambda: call("AddOrder", dict(ORDER)))


def plain_calls(url: str, key: str, secret: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    import http.client
    from urllib.parse import urlsplit

    from botvault.exchanges.kraken import sign_spot

    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=60)

    def call(method: str, data: dict[str, str] | None = None) -> Any:
        path = f"/0/private/{method}"
        nonce = time.time_ns() // 1_000_000  # what most hand-written bots use: milliseconds
        body = urlencode({"nonce": nonce, **(data or {})})
        conn.request("POST", path, body, {
            "API-Key": key, "API-Sign": sign_spot(secret, path, nonce, body),
            "Content-Type": "application/x-www-form-urlencoded"})
        doc = json.loads(conn.getresponse().read())
        if _errors_of(doc):
            raise RuntimeError(";".join(_errors_of(doc)))
        return doc

    return (lambda: call("Balance"), lambda: call("AddOrder", dict(ORDER)))


CLIENTS = {"ccxt": ccxt_calls, "sdk": sdk_calls, "krakenex": krakenex_calls,
           "plain": plain_calls}


Calls = Callable[[str, str, str], tuple[Callable[[], Any], Callable[[], Any]]]


def drive(clients: Mapping[str, Calls], kinds: tuple[str, ...], argv: list[str]) -> None:
    """One bot's run (argv: CLIENT URL COUNT; the credential on stdin): prints its tally,
    each failure counted under the first of `kinds` its text holds, else its type's name."""
    client, url, count = argv
    key, secret = json.loads(sys.stdin.readline())
    balance, order = clients[client](url, key, secret)
    tally: Counter[str] = Counter()
    for i in range(int(count)):
        try:
            (balance if i % 30 == 0 else order)()
            tally["ok"] += 1
        except Exception as exc:
            text = str(exc)
            kind = next((e for e in kinds if e in text), type(exc).__name__)
            tally[kind] += 1
    print(json.dumps(tally))


def main(argv: list[str]) -> None:
    drive(CLIENTS, ("EAPI:Invalid nonce", "EAPI:Rate limit exceeded", "EAPI:Invalid key",
                    "EAPI:Invalid signature"), argv)


if __name__ == "__main__":
    main(sys.argv[1:])

"""A strict local stand-in for Kraken's REST APIs (Spot and Futures), for tests and benches.

Strict where botvault's promises are decided and lenient nowhere that matters:

- signatures are checked with an implementation written here from Kraken's documentation
  (not botvault's own), so a signing bug cannot agree with itself;
- nonces must strictly increase per key, with **no window** (Kraken's default): a nonce not
  above the last *accepted* one is `EAPI:Invalid nonce` (Spot) or `nonceBelowThreshold` /
  `nonceDuplicate` (Futures);
- Spot's per-key REST counter is enforced (max 15/20/20, decay 0.33/0.5/1 per second by tier;
  +2 for ledger and trade-history calls; AddOrder and CancelOrder outside it), Futures' budget of
  500 cost units per 10 s likewise; over the limit is `EAPI:Rate limit exceeded` / HTTP 429
  `apiLimitExceeded`;
- permissions follow the key's two axes (read-only keys cannot trade, withdrawals need the
  withdrawal axis): `EGeneral:Permission denied`.

Every request is counted by key and outcome (`outcomes`), and the greatest number of one key's
requests in flight at once is kept (`max_in_flight`), so a test can prove both "no rejection"
and "one at a time". `latency` holds each private answer back for that long, which widens the
window in which clients that sign out of order get caught, as a real exchange's round trip does.
Time is injectable (`clock`), as are TLS (`ssl_context`) and the tier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["FUTURES_COSTS", "SPOT_TIERS", "KrakenKey", "StrictKraken", "http_json"]

# tier -> (max counter, decay per second), from Kraken's REST rate-limit documentation.
SPOT_TIERS: dict[str, tuple[float, float]] = {
    "starter": (15.0, 0.33), "intermediate": (20.0, 0.5), "pro": (20.0, 1.0)}
_SPOT_COST_2 = frozenset({"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"})
_SPOT_UNCOUNTED = frozenset({"AddOrder", "CancelOrder"})
_SPOT_READ = frozenset({
    "Balance", "BalanceEx", "TradeBalance", "OpenOrders", "ClosedOrders", "QueryOrders",
    "TradesHistory", "QueryTrades", "OpenPositions", "Ledgers", "QueryLedgers", "TradeVolume",
    "GetWebSocketsToken", "DepositMethods", "DepositAddresses", "DepositStatus", "ExportStatus",
    "RetrieveExport"})
_SPOT_WITHDRAW = frozenset({
    "WithdrawMethods", "WithdrawAddresses", "WithdrawInfo", "Withdraw", "WithdrawStatus",
    "WithdrawCancel", "WalletTransfer"})

# Futures: 500 cost units per 10 s (a bucket of 500 refilled at 50 per second).
FUTURES_BUDGET, FUTURES_REFILL = 500.0, 50.0
FUTURES_COSTS: dict[str, int] = {
    "sendorder": 10, "editorder": 10, "cancelorder": 10, "cancelallorders": 25,
    "cancelallordersafter": 25, "accounts": 2, "openpositions": 2, "openorders": 2, "fills": 2,
    "transfer": 10, "leveragepreferences": 2, "pnlpreferences": 2}
_FUTURES_WRITE = frozenset({
    "sendorder", "editorder", "cancelorder", "cancelallorders", "cancelallordersafter",
    "batchorder", "transfer"})
_FUTURES_WITHDRAW = frozenset({"withdrawal"})

MAX_BODY = 1 << 20


@dataclass
class KrakenKey:
    """One API key pair as the exchange knows it."""

    secret: str
    product: str  # "spot" or "futures"
    general: str = "full"  # "none" | "read-only" | "full"
    withdrawal: str = "none"  # "none" | "full"
    last_nonce: int = 0
    counter: float = 0.0  # Spot REST counter, or Futures units spent
    counter_at: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0

    def __repr__(self) -> str:
        return f"KrakenKey(product={self.product!r}, general={self.general!r})"


@dataclass
class _Answer:
    status: int
    doc: dict[str, Any]
    outcome: str


@dataclass
class StrictKraken:
    """The server. Use as a context manager; `url` is its origin (`http://127.0.0.1:PORT`)."""

    tier: str = "starter"
    latency: float = 0.0
    enforce_rate: bool = True
    clock: Callable[[], float] = time.monotonic
    ssl_context: ssl.SSLContext | None = None
    keys: dict[str, KrakenKey] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    paths: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    # -- keys and results ------------------------------------------------------------------

    def add_key(self, api_key: str, secret: str, product: str, *, general: str = "full",
                withdrawal: str = "none") -> None:
        if product not in ("spot", "futures"):
            raise ValueError(f"unknown product {product!r}")
        self.keys[api_key] = KrakenKey(secret, product, general, withdrawal)

    def accepted(self) -> int:
        return self.outcomes["ok"]

    def rejected(self) -> dict[str, int]:
        return {k: v for k, v in self.outcomes.items() if k != "ok"}

    def max_in_flight(self, api_key: str) -> int:
        return self.keys[api_key].max_in_flight

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> StrictKraken:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        scheme = "https" if self.ssl_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StrictKraken:
        return self.start() if self._server is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- dispatch --------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        parts = urlsplit(target)
        path = parts.path
        self.paths[path] += 1
        if path.startswith("/0/public/"):
            return _spot_public(path.removeprefix("/0/public/"))
        if path.startswith("/0/private/"):
            return self._spot_private(path, headers, body)
        if path.startswith("/derivatives/api/v3/"):
            endpoint = path.removeprefix("/derivatives/api/v3/")
            # What Kraken Futures signs is the query string followed by the body: GETs carry
            # only a query, the SDK's POSTs a body (and a query when it has one), ccxt's POSTs
            # put their parameters in the query string and send no body.
            post_data = parts.query + body.decode("utf-8", "replace")
            if endpoint in _FUTURES_PUBLIC:
                return _Answer(200, _FUTURES_PUBLIC[endpoint](), "public")
            return self._futures_private(endpoint, headers, post_data, method)
        return _Answer(404, {"error": ["EGeneral:Unknown method"], "result": {}}, "unknown")

    # One return per refusal, in Kraken's order of checks: that order is what the tests rely on.
    def _spot_private(  # noqa: PLR0911
            self, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        def refuse(error: str) -> _Answer:
            return _Answer(200, {"error": [error], "result": {}}, error)

        key = self.keys.get(_header(headers, "API-Key"))
        if key is None or key.product != "spot":
            return refuse("EAPI:Invalid key")
        text = body.decode("utf-8", "replace")
        if "json" in _header(headers, "Content-Type"):
            try:
                fields = json.loads(text)
                raw_nonce = str(fields.get("nonce", "")) if isinstance(fields, dict) else ""
            except ValueError:
                return refuse("EGeneral:Invalid arguments")
        else:
            nonces = [v for k, v in parse_qsl(text, keep_blank_values=True) if k == "nonce"]
            raw_nonce = nonces[0] if len(nonces) == 1 else ""
        if not raw_nonce.isdigit() or len(raw_nonce) > 20:
            return refuse("EAPI:Invalid nonce")
        message = path.encode() + hashlib.sha256(raw_nonce.encode() + body).digest()
        if not _signature_ok(key.secret, message, _header(headers, "API-Sign")):
            return refuse("EAPI:Invalid signature")
        method = path.removeprefix("/0/private/")
        with self.lock:
            nonce = int(raw_nonce)
            if nonce <= key.last_nonce:
                return refuse("EAPI:Invalid nonce")
            key.last_nonce = nonce
            if not _spot_allowed(key, method):
                return refuse("EGeneral:Permission denied")
            if self.enforce_rate and method not in _SPOT_UNCOUNTED:
                limit, decay = SPOT_TIERS[self.tier]
                now = self.clock()
                key.counter = max(0.0, key.counter - (now - key.counter_at) * decay)
                key.counter_at = now
                cost = 2 if method in _SPOT_COST_2 else 1
                if key.counter + cost > limit + 1e-9:  # decay is float arithmetic
                    return refuse("EAPI:Rate limit exceeded")
                key.counter += cost
        return _Answer(200, {"error": [], "result": _spot_result(method)}, "ok")

    def _futures_private(  # noqa: PLR0911 - one return per refusal, as in _spot_private
            self, endpoint: str, headers: dict[str, str], post_data: str, method: str
    ) -> _Answer:
        def refuse(error: str, status: int = 200) -> _Answer:
            return _Answer(status, {"result": "error", "error": error,
                                    "serverTime": _server_time()}, error)

        key = self.keys.get(_header(headers, "APIKey"))
        if key is None or key.product != "futures":
            return refuse("authenticationError")
        raw_nonce = _header(headers, "Nonce")
        message = hashlib.sha256(
            (post_data + raw_nonce + "/api/v3/" + endpoint).encode()).digest()
        if not _signature_ok(key.secret, message, _header(headers, "Authent")):
            return refuse("authenticationError")
        with self.lock:
            if raw_nonce:  # Kraken Futures: the Nonce header is optional
                if not raw_nonce.isdigit() or len(raw_nonce) > 20:
                    return refuse("nonceBelowThreshold")
                nonce = int(raw_nonce)
                if nonce == key.last_nonce:
                    return refuse("nonceDuplicate")
                if nonce < key.last_nonce:
                    return refuse("nonceBelowThreshold")
                key.last_nonce = nonce
            if not _futures_allowed(key, endpoint, method):
                return refuse("authenticationError")
            if self.enforce_rate:
                now = self.clock()
                key.counter = max(0.0, key.counter - (now - key.counter_at) * FUTURES_REFILL)
                key.counter_at = now
                cost = FUTURES_COSTS.get(endpoint, 1)
                if key.counter + cost > FUTURES_BUDGET + 1e-9:
                    return refuse("apiLimitExceeded", 429)
                key.counter += cost
        return _Answer(200, {"result": "success", **_futures_result(endpoint),
                             "serverTime": _server_time()}, "ok")

    def enter(self, headers: dict[str, str]) -> KrakenKey | None:
        key = self.keys.get(_header(headers, "API-Key") or _header(headers, "APIKey"))
        if key is not None:
            with self.lock:
                key.in_flight += 1
                key.max_in_flight = max(key.max_in_flight, key.in_flight)
        return key

    def leave(self, key: KrakenKey | None) -> None:
        if key is not None:
            with self.lock:
                key.in_flight -= 1


def _header(headers: dict[str, str], name: str) -> str:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), "")


def _signature_ok(secret: str, message: bytes, given: str) -> bool:
    expected = base64.b64encode(
        hmac.new(base64.b64decode(secret), message, hashlib.sha512).digest()).decode()
    return hmac.compare_digest(expected.encode(), given.encode())


def _spot_allowed(key: KrakenKey, method: str) -> bool:
    if method in _SPOT_WITHDRAW:
        return key.withdrawal == "full"
    if method in _SPOT_READ:
        return key.general in ("read-only", "full")
    return key.general == "full"


def _futures_allowed(key: KrakenKey, endpoint: str, method: str) -> bool:
    if endpoint in _FUTURES_WITHDRAW:
        return key.withdrawal == "full"
    if endpoint in _FUTURES_WRITE or method not in ("GET",):
        return key.general == "full"
    return key.general in ("read-only", "full")


def _server_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


_order_ids = iter(range(1, 1 << 62))


def _spot_result(method: str) -> dict[str, Any]:  # noqa: PLR0911 - a table of canned answers
    if method in ("Balance", "BalanceEx"):
        return {"ZUSD": "1000.0000", "XXBT": "1.0000000000"}
    if method == "TradeBalance":
        return {"eb": "1000.0000", "tb": "1000.0000", "m": "0.0000", "n": "0.0000",
                "c": "0.0000", "v": "0.0000", "e": "1000.0000", "mf": "1000.0000"}
    if method == "AddOrder":
        return {"descr": {"order": "buy 0.01 XBTUSD @ limit 1000"},
                "txid": [f"OQCLML-BW3P3-{next(_order_ids):06d}"]}
    if method == "CancelOrder":
        return {"count": 1}
    if method == "OpenOrders":
        return {"open": {}}
    if method == "ClosedOrders":
        return {"closed": {}, "count": 0}
    if method == "GetWebSocketsToken":
        return {"token": "1Dwc4lzSwNWOAwkMdqhssNNFhs1ed606d1WcF3XfEMw", "expires": 900}
    return {}


def _spot_public(method: str) -> _Answer:
    result: dict[str, Any]
    if method == "Time":
        now = int(time.time())
        result = {"unixtime": now, "rfc1123": time.strftime("%a, %d %b %y %H:%M:%S +0000",
                                                          time.gmtime(now))}
    elif method == "SystemStatus":
        result = {"status": "online", "timestamp": _server_time()}
    elif method == "Assets":
        result = {
            "XXBT": {"aclass": "currency", "altname": "XBT", "decimals": 10,
                     "display_decimals": 5, "collateral_value": 1.0, "status": "enabled"},
            "ZUSD": {"aclass": "currency", "altname": "USD", "decimals": 4,
                     "display_decimals": 2, "collateral_value": 1.0, "status": "enabled"}}
    elif method == "AssetPairs":
        result = {"XXBTZUSD": {
            "altname": "XBTUSD", "wsname": "XBT/USD", "aclass_base": "currency",
            "base": "XXBT", "aclass_quote": "currency", "quote": "ZUSD", "lot": "unit",
            "cost_decimals": 5, "pair_decimals": 1, "lot_decimals": 8, "lot_multiplier": 1,
            "leverage_buy": [2, 3], "leverage_sell": [2, 3],
            "fees": [[0, 0.26], [50000, 0.24]], "fees_maker": [[0, 0.16], [50000, 0.14]],
            "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
            "ordermin": "0.0001", "costmin": "0.5", "tick_size": "0.1", "status": "online"}}
    else:
        return _Answer(200, {"error": ["EGeneral:Unknown method"], "result": {}}, "unknown")
    return _Answer(200, {"error": [], "result": result}, "public")


def _futures_instruments() -> dict[str, Any]:
    return {"result": "success", "serverTime": _server_time(), "instruments": [{
        "symbol": "PF_XBTUSD", "type": "flexible_futures", "underlying": "rr_xbtusd",
        "tickSize": 0.5, "contractSize": 1, "tradeable": True, "impactMidSize": 1,
        "maxPositionSize": 1000000, "openingDate": "2022-01-01T00:00:00.000Z",
        "marginLevels": [{"contracts": 0, "initialMargin": 0.02, "maintenanceMargin": 0.01}],
        "fundingRateCoefficient": 8, "maxRelativeFundingRate": 0.001, "isin": "GB00J62YGL67",
        "contractValueTradePrecision": 4, "postOnly": False, "feeScheduleUid": "eef90775",
        "retailMarginLevels": [], "category": "", "tags": [], "base": "XBT", "quote": "USD",
        "pair": "XBT:USD", "mtf": False}]}


def _futures_tickers() -> dict[str, Any]:
    return {"result": "success", "serverTime": _server_time(), "tickers": [{
        "symbol": "PF_XBTUSD", "last": 37500.0, "bid": 37499.5, "ask": 37500.5,
        "vol24h": 100.0, "markPrice": 37500.0, "tag": "perpetual", "pair": "XBT:USD",
        "suspended": False, "postOnly": False}]}


_FUTURES_PUBLIC: dict[str, Callable[[], dict[str, Any]]] = {
    "instruments": _futures_instruments, "tickers": _futures_tickers}


def _futures_result(endpoint: str) -> dict[str, Any]:  # noqa: PLR0911 - canned answers
    if endpoint == "accounts":
        return {"accounts": {"flex": {"type": "multiCollateralMarginAccount",
                                      "currencies": {}, "balanceValue": 1000.0,
                                      "portfolioValue": 1000.0, "availableMargin": 1000.0}}}
    if endpoint == "openpositions":
        return {"openPositions": []}
    if endpoint == "openorders":
        return {"openOrders": []}
    if endpoint == "fills":
        return {"fills": []}
    if endpoint == "sendorder":
        return {"sendStatus": {"order_id": f"c1a3f2b4-0000-4000-8000-{next(_order_ids):012d}",
                               "status": "placed", "receivedTime": _server_time(),
                               "orderEvents": []}}
    if endpoint == "cancelorder":
        return {"cancelStatus": {"status": "cancelled", "receivedTime": _server_time(),
                                 "orderEvents": []}}
    return {}


def _handler(kraken: StrictKraken) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, the second one waits for the
        # client's delayed ACK (40 ms) on every request.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length", "0") or "0")
            if length > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length) if length else b""
            headers = dict(self.headers.items())
            key = kraken.enter(headers)
            try:
                if kraken.latency and key is not None:
                    time.sleep(kraken.latency)
                answer = kraken.answer(self.command, self.path, headers, body)
            finally:
                kraken.leave(key)
            with kraken.lock:
                kraken.outcomes[answer.outcome] += 1
            data = json.dumps(answer.doc).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass  # quiet: pytest shows the test's own output

    return Handler


def http_json(url: str, method: str, target: str, body: bytes | str = b"",
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One plain HTTP request to `url`'s host (this stand-in or a gateway in front of it):
    the status and the decoded JSON answer."""
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    try:
        conn.request(method, target, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()

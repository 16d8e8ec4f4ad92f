"""A strict local stand-in for Kraken's REST APIs (Spot and Futures), for tests and benches.

It follows these pages of Kraken's documentation (and nothing kinder):

- https://docs.kraken.com/api/docs/guides/futures-rest (Futures signatures: the
  `endpointPath` is the path without `/derivatives`, the history API's `/api/history/...` as it
  stands; `postData` is the query string followed by the body) and Kraken's Spot REST
  authentication guide (`API-Sign` over path + SHA256(nonce + body); the nonce an unsigned
  64-bit integer);
- https://docs.kraken.com/exchange/guides/rest/api-keys (which permission each Spot endpoint
  needs; `EGeneral:Permission denied` without it) and the reference pages for the endpoints it
  does not list (GetApiKeyInfo and ListWalletAccounts need none, CreditLines Query Funds,
  Level3 Query Open Orders, AccountTransfer Withdraw Funds);
- https://docs.kraken.com/exchange/guides/rest/ratelimits (Spot's per-key counter by tier,
  `EAPI:Rate limit exceeded`) and https://docs.kraken.com/exchange/guides/futures/ratelimits
  (500 units per 10 s on /derivatives, batchorder 9 + size);
- Kraken's Spot error list (`EGeneral:Unknown method`, `EAPI:Invalid nonce`), and the Futures
  history API pages (https://docs.kraken.com/api/docs/futures-api/history/), v2 and v3 served.

So:

- signatures are checked with an implementation written here from Kraken's documentation
  (not botvault's own), so a signing bug cannot agree with itself;
- a Spot method or Futures endpoint Kraken does not have is refused: Spot
  `EGeneral:Unknown method`, Futures HTTP 404 (Kraken documents no error body for an unrouted
  path; its web server answers 404); nothing about it is counted or spent;
- nonces must strictly increase per key, with **no window** (Kraken's default), and a Spot
  nonce is an unsigned 64-bit integer: above 2^64-1 or not above the last *accepted* one is
  `EAPI:Invalid nonce`; Futures `nonceBelowThreshold` / `nonceDuplicate`;
- Spot's per-key REST counter is enforced (max 15/20/20, decay 0.33/0.5/1 per second by tier;
  +2 for ledger and trade-history calls; AddOrder and CancelOrder outside it), Futures' budget of
  500 cost units per 10 s likewise (batchorder 9 + the batch's size); over the limit is
  `EAPI:Rate limit exceeded` / HTTP 429 `apiLimitExceeded`;
- permissions follow the key's two axes per documented endpoint (read-only keys cannot write;
  withdrawals, AccountTransfer and WalletTransfer need the withdrawal axis; Futures reads are GET
  only, PUT and DELETE write): `EGeneral:Permission denied` / `authenticationError`.

Every request is counted by key and outcome (`outcomes`), and the greatest number of one key's
requests in flight at once is kept (`max_in_flight`), so a test can prove both "no rejection"
and "one at a time". `latency` holds each private answer back for that long, which widens the
window in which clients that sign out of order get caught, as a real exchange's round trip does.
`drop_after` names endpoints (`AddOrder`, `sendorder`) whose answer is lost: the request is
executed and counted, then the connection is closed without a word, as when a link dies on the
way back. `export_size` is the size of RetrieveExport's (zip) and accountlogcsv's answers.
The headers of each path's last request are kept (`last_headers`).
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

__all__ = ["FUTURES_COSTS", "SPOT_MAX_NONCE", "SPOT_TIERS", "KrakenKey", "StrictKraken",
           "futures_cost", "http_json"]

# tier -> (max counter, decay per second), from Kraken's REST rate-limit documentation.
SPOT_TIERS: dict[str, tuple[float, float]] = {
    "starter": (15.0, 0.33), "intermediate": (20.0, 0.5), "pro": (20.0, 1.0)}
_SPOT_COST_2 = frozenset({"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"})
_SPOT_UNCOUNTED = frozenset({"AddOrder", "CancelOrder"})
_SPOT_NONE = frozenset({"GetApiKeyInfo", "ListWalletAccounts"})
# Kraken's query permissions, and the ones a read-only key (as botvault models it: the query
# permissions, deposit addresses, websocket token) carries.
_SPOT_READ = frozenset({
    "Balance", "BalanceEx", "TradeBalance", "CreditLines", "OpenOrders", "ClosedOrders",
    "QueryOrders", "OrderAmends", "TradesHistory", "QueryTrades", "OpenPositions", "Level3",
    "Ledgers", "QueryLedgers", "TradeVolume", "GetWebSocketsToken", "DepositMethods",
    "DepositAddresses", "DepositStatus", "ExportStatus", "RetrieveExport", "Earn/Strategies",
    "Earn/Allocations", "Earn/AllocateStatus", "Earn/DeallocateStatus"})
_SPOT_WRITE = frozenset({
    "AddOrder", "AddOrderBatch", "AmendOrder", "EditOrder", "CancelOrder", "CancelAll",
    "CancelAllOrdersAfter", "CancelOrderBatch", "AddExport", "RemoveExport", "Earn/Allocate",
    "Earn/Deallocate", "CreateSubaccount"})
_SPOT_WITHDRAW = frozenset({
    "WithdrawMethods", "WithdrawAddresses", "WithdrawInfo", "Withdraw", "WithdrawStatus",
    "WithdrawCancel", "WalletTransfer", "AccountTransfer"})
_SPOT_METHODS = _SPOT_NONE | _SPOT_READ | _SPOT_WRITE | _SPOT_WITHDRAW
SPOT_MAX_NONCE = (1 << 64) - 1

# Futures: 500 cost units per 10 s (a bucket of 500 refilled at 50 per second).
FUTURES_BUDGET, FUTURES_REFILL = 500.0, 50.0
FUTURES_COSTS: dict[str, int] = {
    "sendorder": 10, "editorder": 10, "cancelorder": 10, "cancelallorders": 25,
    "cancelallordersafter": 25, "accounts": 2, "openpositions": 2, "openorders": 2, "fills": 2,
    "transfer": 10, "leveragepreferences": 2, "pnlpreferences": 2}
_FUTURES_WRITE = frozenset({
    "sendorder", "editorder", "cancelorder", "cancelallorders", "cancelallordersafter",
    "batchorder", "transfer", "transfer/subaccount", "assignmentprogram/add",
    "assignmentprogram/delete"})
_FUTURES_WITHDRAW = frozenset({"withdrawal"})
# Reads (GET; orders/status is a POST that reads), and paths that read on GET and write on PUT.
_FUTURES_READ = frozenset({
    "accounts", "openpositions", "openorders", "fills", "recentorders", "orders/status",
    "notifications", "transfers", "unwindqueue", "subaccounts", "feeschedules/volumes",
    "assignmentprogram/current", "assignmentprogram/history", "initialmargin",
    "initialmargin/maxordersize"})
_FUTURES_READ_ON_GET = frozenset({
    "leveragepreferences", "pnlpreferences", "self-trade-strategy",
    "rfq-assignment/max-leverage", "subaccount/{uid}/trading-enabled"})
_FUTURES_ENDPOINTS = _FUTURES_WRITE | _FUTURES_WITHDRAW | _FUTURES_READ | _FUTURES_READ_ON_GET
_HISTORY = frozenset({
    "v2/orders", "v2/executions", "v2/triggers", "v2/account-log", "v2/accountlogcsv",
    "v3/orders", "v3/executions", "v3/triggers", "v3/account-log", "v3/accountlogcsv",
    "v3/positions"})

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
    raw: bytes | None = None  # a non-JSON answer (an export), sent as `content_type`
    content_type: str = "application/json"
    drop: bool = False  # executed, and the answer is lost: close without a word


def _not_found() -> _Answer:
    return _Answer(404, {"result": "error", "error": "notFound", "serverTime": _server_time()},
                   "unknown")


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
    drop_after: set[str] = field(default_factory=set)
    export_size: int = 1024
    last_headers: dict[str, dict[str, str]] = field(default_factory=dict)
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

    def answer(  # noqa: PLR0911 - one return per kind of path
            self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        parts = urlsplit(target)
        path = parts.path
        self.paths[path] += 1
        self.last_headers[path] = dict(headers)
        if path.startswith("/0/public/"):
            return _spot_public(path.removeprefix("/0/public/"))
        if path.startswith("/0/private/"):
            return self._spot_private(path, headers, body)
        # What Kraken Futures signs is the query string followed by the body: GETs carry only a
        # query, the SDK's POSTs a body (and a query when it has one), ccxt's POSTs put their
        # parameters in the query string and send no body.
        post_data = parts.query + body.decode("utf-8", "replace")
        if path.startswith("/derivatives/api/v3/"):
            endpoint = path.removeprefix("/derivatives/api/v3/")
            if endpoint in _FUTURES_PUBLIC:
                return _Answer(200, _FUTURES_PUBLIC[endpoint](), "public")
            name = _futures_template(endpoint)
            if name not in _FUTURES_ENDPOINTS:
                return _not_found()
            return self._futures_private(name, "/api/v3/" + endpoint, headers, post_data,
                                         method)
        if path.startswith("/api/history/"):
            name = path.removeprefix("/api/history/")
            if name not in _HISTORY or method != "GET":
                return _not_found()
            return self._futures_private("history/" + name, path, headers, post_data, method)
        return _Answer(404, {"error": ["EGeneral:Unknown method"], "result": {}}, "unknown")

    # One return per refusal, in Kraken's order of checks: that order is what the tests rely on.
    def _spot_private(  # noqa: PLR0911
            self, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        def refuse(error: str) -> _Answer:
            return _Answer(200, {"error": [error], "result": {}}, error)

        method = path.removeprefix("/0/private/")
        if method not in _SPOT_METHODS:
            return refuse("EGeneral:Unknown method")
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
        with self.lock:
            nonce = int(raw_nonce)
            if nonce <= key.last_nonce or nonce > SPOT_MAX_NONCE:
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
        if method == "RetrieveExport":
            return _Answer(200, {}, "ok", raw=_export_bytes(self.export_size),
                           content_type="application/zip")
        return _Answer(200, {"error": [], "result": _spot_result(method)}, "ok",
                       drop=method in self.drop_after)

    def _futures_private(  # noqa: PLR0911 - one return per refusal, as in _spot_private
            self, endpoint: str, signed_path: str, headers: dict[str, str], post_data: str,
            method: str) -> _Answer:
        def refuse(error: str, status: int = 200) -> _Answer:
            return _Answer(status, {"result": "error", "error": error,
                                    "serverTime": _server_time()}, error)

        key = self.keys.get(_header(headers, "APIKey"))
        if key is None or key.product != "futures":
            return refuse("authenticationError")
        raw_nonce = _header(headers, "Nonce")
        message = hashlib.sha256((post_data + raw_nonce + signed_path).encode()).digest()
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
            # The history API has a budget of its own (not modelled); /derivatives its 500.
            if self.enforce_rate and not endpoint.startswith("history/"):
                now = self.clock()
                key.counter = max(0.0, key.counter - (now - key.counter_at) * FUTURES_REFILL)
                key.counter_at = now
                cost = futures_cost(endpoint, post_data)
                if key.counter + cost > FUTURES_BUDGET + 1e-9:
                    return refuse("apiLimitExceeded", 429)
                key.counter += cost
        if endpoint.endswith("accountlogcsv"):
            return _Answer(200, {}, "ok", raw=_export_bytes(self.export_size),
                           content_type="text/csv")
        return _Answer(200, {"result": "success", **_futures_result(endpoint),
                             "serverTime": _server_time()}, "ok",
                       drop=endpoint in self.drop_after)

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
    if method in _SPOT_NONE:
        return True
    if method in _SPOT_WITHDRAW:
        return key.withdrawal == "full"
    if method in _SPOT_READ:
        return key.general in ("read-only", "full")
    return key.general == "full"


def _futures_template(endpoint: str) -> str:
    parts = endpoint.split("/")
    if len(parts) == 3 and parts[0] == "subaccount" and parts[1] and parts[2] == \
            "trading-enabled":
        return "subaccount/{uid}/trading-enabled"
    return endpoint


def _futures_allowed(key: KrakenKey, endpoint: str, method: str) -> bool:
    if endpoint in _FUTURES_WITHDRAW:
        return key.withdrawal == "full"
    reads = endpoint.startswith("history/") or endpoint == "orders/status" or (
        method == "GET" and (endpoint in _FUTURES_READ or endpoint in _FUTURES_READ_ON_GET))
    if reads:
        return key.general in ("read-only", "full")
    return key.general == "full"


def futures_cost(endpoint: str, post_data: str = "") -> int:
    """Kraken's cost of one /derivatives call: batchorder is 9 + the number of instructions
    in its `json` parameter; unlisted endpoints cost 1."""
    if endpoint != "batchorder":
        return FUTURES_COSTS.get(endpoint, 1)
    try:
        doc = json.loads(dict(parse_qsl(post_data)).get("json", ""))
        batch = doc.get("batchOrder", doc.get("batch_order", [])) if isinstance(doc, dict) \
            else []
        size = len(batch) if isinstance(batch, list) else 0
    except ValueError:
        size = 0
    return 9 + size


def _export_bytes(size: int) -> bytes:
    # Not all one byte, so a truncation or a re-encoding shows in the bytes, not just the length.
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


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
            if answer.drop:
                # Executed; the way back dies: no status line, the connection closed.
                with kraken.lock:
                    kraken.outcomes["answer-lost"] += 1
                self.close_connection = True
                return
            data = answer.raw if answer.raw is not None else json.dumps(answer.doc).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
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

"""Every private endpoint the client libraries call is in botvault's tables, and a read-only
grant reaches exactly the reads among them.

The endpoints are read from the installed clients themselves: ccxt's `describe()["api"]` for
`kraken` and `krakenfutures`, and python-kraken-sdk's source (every `uri=` / `endpoint=` it
passes to its request functions, found with `ast`). A new client version that calls an endpoint
the tables do not classify fails here, before a bot meets it as a refusal.

`coverage_rows()` is also what the gateway docs' coverage table is printed from:
`python -m tests.test_endpoint_coverage`.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import ccxt
import kraken as kraken_sdk
import pytest

from botvault.errors import ScopeError
from botvault.exchanges.endpoints import KRAKEN_FUTURES, KRAKEN_SPOT, check, requirement
from botvault.scopes import General, Withdrawal

Row = tuple[str, str, str, str]  # client, exchange, HTTP method, path as the client sends it

# A sample value for a path parameter, as a client would fill it in.
_SAMPLE = {"uid": "7bd3e6d5-1c41-4a4b-9e9b-0a6f1e2c3d4e", "subaccountUid":
           "7bd3e6d5-1c41-4a4b-9e9b-0a6f1e2c3d4e"}


def _fill(path: str) -> str:
    for name, value in _SAMPLE.items():
        path = path.replace("{" + name + "}", value)
    return path


def ccxt_rows() -> list[Row]:
    rows: list[Row] = []
    spot = ccxt.kraken().describe()["api"]["private"]
    for method, paths in spot.items():
        rows += [("ccxt kraken", KRAKEN_SPOT, method.upper(), "/0/private/" + p) for p in paths]
    futures = ccxt.krakenfutures()
    api = futures.describe()["api"]
    for method, paths in api["private"].items():
        rows += [("ccxt krakenfutures", KRAKEN_FUTURES, method.upper(),
                  "/derivatives/api/v3/" + _fill(p)) for p in paths]
    # History: ccxt signs the paths its access map marks private, at the version its map gives.
    access = futures.options["access"]["history"]["GET"]
    versions = futures.options["versions"]["history"]["GET"]
    for path in api["history"]["get"]:
        if access.get(path) == "private":
            version = versions.get(path, futures.version)
            rows.append(("ccxt krakenfutures", KRAKEN_FUTURES, "GET",
                         f"/api/history/{version}/{path}"))
    return rows


def _text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name):
                parts.append("{" + value.value.id + "}")
            else:
                return None
        return "".join(parts)
    return None


def sdk_rows() -> list[Row]:
    """(method, path) of every private request python-kraken-sdk's REST clients make."""
    root = Path(kraken_sdk.__file__).parent
    rows: list[Row] = []
    for product, exchange in (("spot", KRAKEN_SPOT), ("futures", KRAKEN_FUTURES)):
        for source in sorted((root / product).glob("*.py")):
            tree = ast.parse(source.read_text(encoding="utf-8"))
            for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
                words = {k.arg: k.value for k in call.keywords if k.arg}
                target = words.get("uri") or words.get("endpoint")
                path = _text(target) if target is not None else None
                if path is None or not path.startswith(("/0/", "/derivatives/", "/api/")):
                    continue
                auth = words.get("auth")
                private = not (isinstance(auth, ast.Constant) and auth.value is False)
                if "endpoint" in words:
                    # Passed to a history helper: the user's events are private, the market's
                    # (futures/market.py) public.
                    private = source.name == "user.py"
                if path.startswith("/0/public/") or "/charts/" in path or not private:
                    continue
                method = words.get("method")
                verb = method.value if isinstance(method, ast.Constant) else "GET"
                rows.append((f"python-kraken-sdk {product}/{source.stem}", exchange,
                             str(verb).upper(), _fill(path)))
    return rows


def coverage_rows() -> list[Row]:
    return sorted(set(ccxt_rows()) | set(sdk_rows()))


# What a read-only grant may NOT call, restated from Kraken's docs independently of the tables:
# Spot endpoints that create, change, cancel or move something (and the two botvault holds at
# full on purpose: a websocket token carries the key's whole power, and DepositAddresses with
# new=true creates an address); on Futures every method but GET, and the GET-less writes.
SPOT_WRITES = frozenset({
    "AddOrder", "AddOrderBatch", "AmendOrder", "EditOrder", "CancelOrder", "CancelAll",
    "CancelAllOrdersAfter", "CancelOrderBatch", "AddExport", "RemoveExport",
    "GetWebSocketsToken", "DepositAddresses", "Earn/Allocate", "Earn/Deallocate",
    "Withdraw", "WithdrawCancel", "WithdrawInfo", "WithdrawMethods", "WithdrawAddresses",
    "WithdrawStatus", "WalletTransfer", "AccountTransfer", "CreateSubaccount",
})


# Kraken's reference has the order-status query as a POST (python-kraken-sdk sends it so; ccxt
# a GET): it only reads.
FUTURES_POST_READS = frozenset({"/derivatives/api/v3/orders/status"})


def _is_write(exchange: str, method: str, path: str) -> bool:
    if exchange == KRAKEN_SPOT:
        return path.removeprefix("/0/private/") in SPOT_WRITES
    return method != "GET" and path not in FUTURES_POST_READS


def test_the_clients_define_private_endpoints() -> None:
    rows = coverage_rows()
    clients = {client.split()[0] for client, *_ in rows}
    assert clients == {"ccxt", "python-kraken-sdk"}
    assert len([r for r in rows if r[1] == KRAKEN_SPOT]) > 40
    assert len([r for r in rows if r[1] == KRAKEN_FUTURES]) > 40


@pytest.mark.parametrize(("client", "exchange", "method", "path"), coverage_rows())
def test_every_client_endpoint_is_classified(client: str, exchange: str, method: str,
                                             path: str) -> None:
    need = requirement(exchange, path, method)
    assert need.known, f"{client}: {method} {path} is not in botvault's endpoint tables"
    assert need.doc.startswith("https://docs.kraken.com/")


@pytest.mark.parametrize(("client", "exchange", "method", "path"), coverage_rows())
def test_read_only_grant_reaches_every_read_and_no_write(client: str, exchange: str,
                                                         method: str, path: str) -> None:
    write = _is_write(exchange, method, path)
    try:
        check(exchange, path, General.READ_ONLY, Withdrawal.NONE, allow_withdrawal=False,
              method=method)
    except ScopeError:
        assert write, f"{client}: {method} {path} reads, and a read-only grant was refused"
    else:
        assert not write, f"{client}: {method} {path} writes, and a read-only grant passed"


def _ccxt_name(api: str, method: str, path: str) -> str:
    """ccxt's implicit method for an api/method/path (`privatePostAddOrder`)."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path) if w]
    return api + method.capitalize() + "".join(w[0].upper() + w[1:] for w in words)


def calls() -> dict[tuple[str, str, str], set[str]]:
    """(exchange, HTTP method, path) -> the client calls that make it (ccxt's implicit
    methods, the SDK's functions)."""
    found: dict[tuple[str, str, str], set[str]] = {}
    for exchange_id, exchange in ((KRAKEN_SPOT, ccxt.kraken()),
                                  (KRAKEN_FUTURES, ccxt.krakenfutures())):
        api = exchange.describe()["api"]
        for method, paths in api["private"].items():
            for path in paths:
                sent = ("/0/private/" + path if exchange_id == KRAKEN_SPOT
                        else "/derivatives/api/v3/" + _fill(path))
                found.setdefault((exchange_id, method.upper(), sent), set()).add(
                    "ccxt " + _ccxt_name("private", method, path))
        if exchange_id == KRAKEN_FUTURES:
            access = exchange.options["access"]["history"]["GET"]
            versions = exchange.options["versions"]["history"]["GET"]
            for path in api["history"]["get"]:
                if access.get(path) == "private":
                    sent = f"/api/history/{versions.get(path, exchange.version)}/{path}"
                    found.setdefault((exchange_id, "GET", sent), set()).add(
                        "ccxt " + _ccxt_name("history", "get", path))
    root = Path(kraken_sdk.__file__).parent
    for _client, exchange_id, method, path in sdk_rows():
        found.setdefault((exchange_id, method, path), set())
    for product in ("spot", "futures"):
        for source in sorted((root / product).glob("*.py")):
            tree = ast.parse(source.read_text(encoding="utf-8"))
            for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
                for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
                    words = {k.arg: k.value for k in call.keywords if k.arg}
                    target = words.get("uri") or words.get("endpoint")
                    path = _text(target) if target is not None else None
                    for key in [k for k in found if path and k[2] == _fill(path)]:
                        found[key].add(f"sdk {product}.{source.stem}.{function.name}")
    return found


def main() -> None:
    """Print the coverage table (markdown) for the gateway docs."""
    print("| path | method | needs (Kraken permission) | client calls | Kraken doc |")
    print("|---|---|---|---|---|")
    for (exchange, method, path), names in sorted(calls().items(), key=lambda i: i[0][2]):
        need = requirement(exchange, path, method)
        needs = need.general.value + (" + withdrawal" if need.withdrawal else "")
        doc = need.doc.removeprefix("https://docs.kraken.com/")
        shown = ", ".join(sorted(n for n in names if not n.endswith(("_get_historical_events",
                                                                     "request"))))
        print(f"| `{path}` | {method} | {needs} ({need.group}) | {shown} | {doc} |")


if __name__ == "__main__":
    main()
    sys.exit(0)

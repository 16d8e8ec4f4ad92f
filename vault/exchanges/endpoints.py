"""Which scope each Kraken endpoint needs, and the check the agent makes before signing.

A key carries two axes (docs/commands.md, "The exchange's key form"): general
none < read-only < full, and withdrawal none < full. Each endpoint here maps to the least a
key must have on both axes.

Rules that shape the tables:

- Reading needs read-only; anything that writes to the server needs full. Kraken defines a
  Futures read-only key as one that reaches "only endpoints that do not write to the server",
  and the same line is drawn for Spot's finer permissions.
- Moving funds out of the account the key belongs to needs the withdrawal axis, and the agent
  must have been unlocked with `--allow-withdrawal` as well.
- Paths match exactly (after dropping a query string, a trailing slash and, for Futures, the
  `/derivatives` prefix) and case-sensitively, as Kraken routes them. An endpoint that is not
  in a table needs full: being unknown, it may write.
- Where the body decides what a request does, the path's stricter reading is taken: a policy
  that parsed bodies could disagree with Kraken's own parser, and that gap is a bypass.
- Futures paths that read on GET and write on PUT or DELETE are judged per method; a path with
  a parameter in it (`/api/v3/subaccount/{uid}/trading-enabled`) is matched by its template.

Every row names the page of Kraken's documentation it follows (`Requirement.doc`), and
tests/test_endpoint_coverage.py fails on any private endpoint that ccxt or python-kraken-sdk
calls and these tables do not classify.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..errors import InvalidInputError, ScopeError
from ..scopes import General, Withdrawal
from .profiles import KRAKEN as EXCHANGES
from .profiles import KRAKEN_FUTURES, KRAKEN_SPOT

__all__ = [
    "EXCHANGES",
    "KRAKEN_FUTURES",
    "KRAKEN_SPOT",
    "Requirement",
    "check",
    "check_product",
    "known_paths",
    "normalise_path",
    "requirement",
    "template_of",
]


_FUTURES_PREFIX = "/derivatives"


@dataclass(frozen=True)
class Requirement:
    """What a key needs to be used on one endpoint."""

    general: General
    """Minimum general scope."""
    withdrawal: bool
    """True when the key needs withdrawal "full" and the agent `--allow-withdrawal`."""
    group: str
    """Kraken's permission group (Spot), or "read-only" / "full" / "withdrawal" (Futures)."""
    known: bool
    """False when the endpoint is not in the table: it then needs full general scope, and a key
    that could withdraw is refused unless withdrawals were allowed (see `check`)."""
    doc: str = field(default="", compare=False)
    """The page of Kraken's documentation the row follows (not part of equality)."""


# Kraken's pages the tables follow. Spot: the permission guide (which endpoint each permission
# enables) unless a row's own reference page says more; Futures: the key form's definitions in
# the REST guide, and the reference pages for the history and margin endpoints.
_DOCS = "https://docs.kraken.com/api/docs/"
SPOT_PERMISSIONS_DOC = "https://docs.kraken.com/exchange/guides/rest/api-keys"
_SPOT_REF = _DOCS + "rest-api/"
FUTURES_KEYS_DOC = _DOCS + "guides/futures-rest"
_FUTURES_REF = _DOCS + "futures-api/"


def _spot(general: General, group: str, *, withdrawal: bool = False,
          doc: str = SPOT_PERMISSIONS_DOC) -> Requirement:
    return Requirement(general=general, withdrawal=withdrawal, group=group, known=True, doc=doc)


_R, _F, _N = General.READ_ONLY, General.FULL, General.NONE

_QUERY_FUNDS = "Query Funds"
_QUERY_OPEN = "Query Open Orders & Trades"
_QUERY_CLOSED = "Query Closed Orders & Trades"
_QUERY_ORDERS = "Query Open Orders & Trades or Query Closed Orders & Trades"
_CREATE_ORDERS = "Create & Modify Orders"
_CANCEL_ORDERS = "Cancel/Close Orders"
_LEDGER = "Query Ledger Entries"
_EXPORT = "Export Data"
_WEBSOCKET = "Access WebSocket API"
_DEPOSIT = "Deposit Funds"
_WITHDRAW = "Withdraw Funds"
_EARN = "Earn Funds"
_NO_PERMISSION = "None"

_SPOT_PRIVATE = "/0/private/"

_SPOT_TABLE: Mapping[str, Requirement] = MappingProxyType({
    _SPOT_PRIVATE + name: req for name, req in {
        # Kraken's reference: "API Key Permissions Required: None". They read what the key
        # itself is (its permissions, its wallet accounts), so a key of any scope may call them.
        "GetApiKeyInfo": _spot(_N, _NO_PERMISSION, doc=_SPOT_REF + "get-api-key-info"),
        "ListWalletAccounts": _spot(
            _N, _NO_PERMISSION,
            doc="https://docs.kraken.com/api-reference/account-data/list-wallet-accounts"),
        # Query Funds
        "Balance": _spot(_R, _QUERY_FUNDS),
        "CreditLines": _spot(_R, _QUERY_FUNDS, doc=_SPOT_REF + "get-credit-lines"),
        "BalanceEx": _spot(_R, _QUERY_FUNDS),
        "TradeBalance": _spot(_R, _QUERY_FUNDS),
        "TradeVolume": _spot(_R, _QUERY_FUNDS),
        # Query Open / Closed Orders & Trades
        "OpenOrders": _spot(_R, _QUERY_OPEN),
        "OpenPositions": _spot(_R, _QUERY_OPEN),
        "Level3": _spot(_R, _QUERY_OPEN, doc=_SPOT_REF + "get-level-3-order-book"),
        "ClosedOrders": _spot(_R, _QUERY_CLOSED),
        "QueryOrders": _spot(_R, _QUERY_ORDERS),
        "OrderAmends": _spot(_R, _QUERY_ORDERS),
        "TradesHistory": _spot(_R, _QUERY_ORDERS),
        "QueryTrades": _spot(_R, _QUERY_ORDERS),
        # Query Ledger Entries
        "Ledgers": _spot(_R, _LEDGER),
        "QueryLedgers": _spot(_R, _LEDGER),
        # Export Data. Asking for a report and deleting one write to the server (a report is
        # built and stored, or thrown away, possibly one another tool is waiting for); only
        # reading a report's status or contents is read-only.
        "AddExport": _spot(_F, _EXPORT),
        "RemoveExport": _spot(_F, _EXPORT),
        "ExportStatus": _spot(_R, _EXPORT),
        "RetrieveExport": _spot(_R, _EXPORT),
        # Create & Modify Orders, Cancel/Close Orders
        "AddOrder": _spot(_F, _CREATE_ORDERS),
        "AddOrderBatch": _spot(_F, _CREATE_ORDERS),
        "AmendOrder": _spot(_F, _CREATE_ORDERS),
        "EditOrder": _spot(_F, _CREATE_ORDERS),
        "CancelOrder": _spot(_F, _CANCEL_ORDERS),
        "CancelAll": _spot(_F, _CANCEL_ORDERS),
        "CancelAllOrdersAfter": _spot(_F, _CANCEL_ORDERS),
        "CancelOrderBatch": _spot(_F, _CANCEL_ORDERS),
        # Access WebSocket API. The token is a bearer credential that carries every permission
        # the key really has on Kraken, order entry included, for the life of a websocket
        # connection, out of reach of this check. Handing one out is handing out the key's
        # real power, so it needs full.
        "GetWebSocketsToken": _spot(_F, _WEBSOCKET),
        # Deposit Funds. DepositAddresses with new=true creates an address, and only the body
        # says so; the path's stricter reading applies (module docstring).
        "DepositMethods": _spot(_R, _DEPOSIT),
        "DepositStatus": _spot(_R, _DEPOSIT),
        "DepositAddresses": _spot(_F, _DEPOSIT),
        # Earn Funds. Allocating moves funds between the spot and earn wallets of the same
        # account: a write, not a withdrawal.
        "Earn/Allocate": _spot(_F, _EARN),
        "Earn/Deallocate": _spot(_F, _EARN),
        "Earn/AllocateStatus": _spot(_R, _EARN),
        "Earn/DeallocateStatus": _spot(_R, _EARN),
        "Earn/Strategies": _spot(_R, _EARN),
        "Earn/Allocations": _spot(_R, _EARN),
        # Withdraw Funds. Kraken gates even the reads of this group behind the withdraw
        # permission, so an agent that was not allowed withdrawals treats the key as if it had
        # none and refuses the whole group. The general axis does not govern these.
        "Withdraw": _spot(_N, _WITHDRAW, withdrawal=True),
        "WithdrawCancel": _spot(_N, _WITHDRAW, withdrawal=True),
        "WithdrawInfo": _spot(_N, _WITHDRAW, withdrawal=True),
        "WithdrawMethods": _spot(_N, _WITHDRAW, withdrawal=True),
        "WithdrawAddresses": _spot(_N, _WITHDRAW, withdrawal=True),
        "WithdrawStatus": _spot(_N, _WITHDRAW, withdrawal=True),
        # Funds leave the spot account: to its Futures wallet (which a Spot key's scope does not
        # cover) or to another (sub)account. Kraken's references ask for the withdraw
        # permission for both.
        "WalletTransfer": _spot(_N, _WITHDRAW, withdrawal=True),
        "AccountTransfer": _spot(_N, _WITHDRAW, withdrawal=True,
                                 doc=_SPOT_REF + "account-transfer"),
        # Kraken's sources disagree (Create & Modify Orders in the guide, Withdraw Funds in the
        # reference); it creates an account, so both axes are required.
        "CreateSubaccount": _spot(_F, _WITHDRAW, withdrawal=True),
    }.items()
})


def _futures(general: General, group: str, *, withdrawal: bool = False,
             doc: str = FUTURES_KEYS_DOC) -> Requirement:
    return Requirement(general=general, withdrawal=withdrawal, group=group, known=True, doc=doc)


_FUTURES_READ = _futures(_R, "read-only")
_FUTURES_FULL = _futures(_F, "full")
_FUTURES_WITHDRAW = _futures(_N, "withdrawal", withdrawal=True)
# Funds go to another account (this or a sub account): Kraken's reference asks for a full key
# and python-kraken-sdk documents the withdrawal permission too, so both axes are required.
_FUTURES_FULL_WITHDRAW = _futures(_F, "withdrawal", withdrawal=True)

_V3 = "/api/v3/"
_HISTORY_DOC = _FUTURES_REF + "history/"

_FUTURES_TABLE: Mapping[str, Requirement] = MappingProxyType({
    **{_V3 + name: _FUTURES_READ for name in (
        "accounts", "openpositions", "openorders", "fills", "recentorders", "orders/status",
        "notifications", "transfers", "unwindqueue", "subaccounts", "feeschedules/volumes",
        "assignmentprogram/current", "assignmentprogram/history",
    )},
    # What an order would need in margin, and the largest order the margin allows: GET reads.
    _V3 + "initialmargin": replace(_FUTURES_READ, doc=_FUTURES_REF + "trading/get-initial-margin"),
    _V3 + "initialmargin/maxordersize": replace(
        _FUTURES_READ, doc=_FUTURES_REF + "trading/get-max-order-size"),
    **{_V3 + name: _FUTURES_FULL for name in (
        "sendorder", "editorder", "cancelorder", "batchorder", "cancelallorders",
        "cancelallordersafter", "transfer", "assignmentprogram/add", "assignmentprogram/delete",
    )},
    _V3 + "withdrawal": _FUTURES_WITHDRAW,
    _V3 + "transfer/subaccount": _FUTURES_FULL_WITHDRAW,
    # The history API only reads. Listed path by path rather than by prefix so that an endpoint
    # Kraken adds there later is unknown (full) until someone looks at it. v3 is Kraken's
    # current history API; clients still call the v2 forms, which Kraken still serves.
    **{f"/api/history/{version}/{name}": replace(_FUTURES_READ, doc=_HISTORY_DOC)
       for version in ("v2", "v3")
       for name in ("orders", "executions", "triggers", "account-log", "accountlogcsv",
                    "positions")
       if (version, name) != ("v2", "positions")},
})

# Same path, GET reads and PUT/DELETE write. Without a method the stricter (write) reading holds,
# as does any method other than GET.
_FUTURES_READ_ON_GET: frozenset[str] = frozenset(_V3 + name for name in (
    "leveragepreferences", "pnlpreferences", "self-trade-strategy",
    "rfq-assignment/max-leverage", "subaccount/{uid}/trading-enabled",
))
_KNOWN_PATHS: Mapping[str, frozenset[str]] = MappingProxyType({
    KRAKEN_SPOT: frozenset(_SPOT_TABLE),
    KRAKEN_FUTURES: frozenset(_FUTURES_TABLE) | _FUTURES_READ_ON_GET,
})

# Paths with a parameter: (prefix, suffix) around one path segment, and the template the tables
# key them by. A segment is what Kraken's router would take: no slash, not empty.
_FUTURES_TEMPLATES: tuple[tuple[str, str, str], ...] = (
    (_V3 + "subaccount/", "/trading-enabled", _V3 + "subaccount/{uid}/trading-enabled"),
)


def template_of(exchange: str, path: str) -> str:
    """The table key of a normalised `path`: itself, or the template it fills in."""
    if exchange == KRAKEN_FUTURES:
        for prefix, suffix, template in _FUTURES_TEMPLATES:
            middle = path[len(prefix):len(path) - len(suffix)] if path.startswith(prefix) \
                and path.endswith(suffix) and len(path) > len(prefix) + len(suffix) else ""
            if middle and "/" not in middle and "{" not in middle:
                return template
    return path


def _unknown() -> Requirement:
    return Requirement(general=_F, withdrawal=False, group="unknown", known=False)


def normalise_path(exchange: str, path: str) -> str:
    """The path as the tables key it: no query string or fragment, no trailing slash, and for
    Futures no `/derivatives` prefix. Case is kept: Kraken's routes are case-sensitive."""
    _check_exchange(exchange)
    if not isinstance(path, str):
        raise InvalidInputError(f"an endpoint path must be text (got {type(path).__name__})")
    return _normalised(exchange, path)


# Every signed request asks this several times (scope checks of the grant and of the entry);
# paths are short (the gateway refuses long ones) and the cache is bounded.
@functools.lru_cache(maxsize=1024)
def _normalised(exchange: str, path: str) -> str:
    path = path.split("?", 1)[0].split("#", 1)[0]
    if exchange == KRAKEN_FUTURES and path.startswith(_FUTURES_PREFIX + "/"):
        path = path[len(_FUTURES_PREFIX):]
    while len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def check_product(exchange: str, path: str) -> None:
    """Refuse (exit 2) a path of the other Kraken product: a Spot `/0/...` path signed with a
    Futures key gets Futures headers (and the reverse), which no server accepts."""
    _check_exchange(exchange)
    bare = path.split("?", 1)[0] if isinstance(path, str) else ""
    spot_like = bare.startswith("/0/")
    futures_like = bare.startswith((_FUTURES_PREFIX + "/", "/api/")) or \
        normalise_path(KRAKEN_FUTURES, bare) in known_paths(KRAKEN_FUTURES)
    if exchange == KRAKEN_FUTURES and spot_like:
        raise InvalidInputError(f"{_shown(bare)} is a Kraken Spot path; this is a Kraken "
                                "Futures key", hint="sign it with a kraken-spot entry, or use "
                                "a Futures path such as /derivatives/api/v3/accounts")
    if exchange == KRAKEN_SPOT and futures_like and not spot_like:
        raise InvalidInputError(f"{_shown(bare)} is a Kraken Futures path; this is a Kraken "
                                "Spot key", hint="sign it with a kraken-futures entry, or use "
                                "a Spot path such as /0/private/Balance")


def known_paths(exchange: str) -> frozenset[str]:
    """Every normalised path the table for `exchange` knows (templates with `{name}`)."""
    _check_exchange(exchange)
    return _KNOWN_PATHS[exchange]


def requirement(exchange: str, path: str, method: str | None = None) -> Requirement:
    """What a key needs to call `path` on `exchange` (`kraken-spot` or `kraken-futures`).

    `method` matters only for the few Futures paths that read on GET and write otherwise;
    without it they need full.
    """
    normalised = template_of(exchange, normalise_path(exchange, path))
    if exchange == KRAKEN_SPOT:
        return _SPOT_TABLE.get(normalised) or _unknown()
    if normalised in _FUTURES_READ_ON_GET:
        is_get = isinstance(method, str) and method.upper() == "GET"
        return _FUTURES_READ if is_get else _FUTURES_FULL
    return _FUTURES_TABLE.get(normalised) or _unknown()


def check(exchange: str, path: str, general: General, withdrawal: Withdrawal, *,
          allow_withdrawal: bool, method: str | None = None) -> Requirement:
    """Return the endpoint's requirement if a key with these scopes may call it, else raise.

    Raises `ScopeError` naming the endpoint, what it needs and what is missing. Beyond the
    table's requirement, an unknown endpoint is refused to a key that could withdraw when the
    agent was not allowed withdrawals: being unknown, it cannot be ruled out that it moves funds
    (a new Kraken endpoint, or a spelling Kraken routes to one botvault knows).
    """
    needed = requirement(exchange, path, method)
    shown = _shown(normalise_path(exchange, path))
    missing = _missing(needed, general, withdrawal, allow_withdrawal=allow_withdrawal)
    if missing:
        raise ScopeError(
            f"{exchange} endpoint {shown} {_needs(needed)}; {' and '.join(missing)}",
            hint=_hint(needed, general),
        )
    return needed


def _missing(needed: Requirement, general: General, withdrawal: Withdrawal, *,
             allow_withdrawal: bool) -> list[str]:
    missing: list[str] = []
    if not general.allows(needed.general):
        missing.append(f"this key's general scope is {general.value}")
    guards_withdrawal = needed.withdrawal or (
        not needed.known and withdrawal is Withdrawal.FULL)
    if needed.withdrawal and withdrawal is not Withdrawal.FULL:
        missing.append(f"this key's withdrawal scope is {withdrawal.value}")
    if guards_withdrawal and not allow_withdrawal:
        missing.append("the agent was not unlocked with --allow-withdrawal")
    return missing


def _needs(needed: Requirement) -> str:
    if not needed.known:
        return ("is not in botvault's table of known endpoints, so it needs general scope full, "
                "and --allow-withdrawal if the key can withdraw")
    parts: list[str] = []
    if needed.general is not General.NONE:
        parts.append(f"general scope {needed.general.value}")
    if needed.withdrawal:
        parts.append("withdrawal scope full and an agent unlocked with --allow-withdrawal")
    return f"({needed.group}) needs {' and '.join(parts)}"


def _hint(needed: Requirement, general: General) -> str:
    if not needed.known and general is General.FULL:
        return ("botvault cannot rule out that an unknown endpoint moves funds; check the path, "
                "or unlock with --allow-withdrawal if this key may withdraw")
    if not needed.known:
        return "check the path's spelling and case; Kraken's paths are case-sensitive"
    if needed.withdrawal:
        return "withdrawals need a key with withdrawal scope full and `unlock --allow-withdrawal`"
    return "use a key whose scope covers this endpoint"


def _shown(path: str) -> str:
    # The path comes from a bot; keep a hostile one from flooding the terminal or the log.
    limit = 120
    return repr(path if len(path) <= limit else path[:limit] + "...")


def _check_exchange(exchange: str) -> None:
    if exchange not in EXCHANGES:
        raise InvalidInputError(
            f"endpoint scopes are known for kraken-spot and kraken-futures, not {exchange!r}")

"""What a request asks for, read from its endpoint and parameters: the orders it creates or
changes, and the funds it moves. Pure: no I/O, no policy.

Every path that creates or changes an order or moves funds is listed in `ORDER_PATHS` and
`FUNDS_PATHS`; `read_request` turns a request into `Order`s and `Funds`, or raises
`Refused("unreadable", ...)` when it cannot be read one way only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from .decimals import BadNumber, Relative, parse_amount, parse_price
from .params import BadParams, decode_json, parse_params
from .refused import Refused

__all__ = ["FUNDS_PATHS", "ORDER_PATHS", "Funds", "Order", "limit_index", "pair_names",
           "read_request"]

_T = TypeVar("_T")
SPOT, FUTURES = "kraken-spot", "kraken-futures"
ORDER_PATHS = {
    SPOT: frozenset({"/0/private/AddOrder", "/0/private/AddOrderBatch", "/0/private/EditOrder",
                     "/0/private/AmendOrder"}),
    FUTURES: frozenset({"/api/v3/sendorder", "/api/v3/editorder", "/api/v3/batchorder"}),
}
FUNDS_PATHS = {
    SPOT: frozenset({"/0/private/Withdraw", "/0/private/WalletTransfer",
                     "/0/private/AccountTransfer"}),
    FUTURES: frozenset({"/api/v3/withdrawal", "/api/v3/transfer", "/api/v3/transfer/subaccount"}),
}
# Spot order types whose limit is `price` / `price2`; every other type executes at market.
_SPOT_LIMIT_IN_PRICE = frozenset({"limit", "iceberg"})
_SPOT_LIMIT_IN_PRICE2 = frozenset({"stop-loss-limit", "take-profit-limit"})
# Futures order types bounded by `limitPrice` (stp and take_profit only when it is given).
_FUTURES_LIMIT = frozenset({"lmt", "post", "ioc", "fok", "stp", "take_profit"})
_MAX_ORDERS = 50


@dataclass(frozen=True)
class Order:
    """One order a request creates (`ref` None) or changes (`ref`: the id it names).

    Fields are None where the request does not say (an edit that keeps the volume).
    `price` is the worst price the order can execute at as far as the request bounds it:
    None when it does not (a market order, a relative price). `inverse`: a Futures
    contract whose size is already in the quote currency (PI_/FI_), so its notional needs
    no price.
    """

    pair: str | None
    order_type: str | None
    volume: Decimal | None
    price: Decimal | None
    reduce_only: bool
    ref: str | None = None
    client_id: str | None = None
    inverse: bool = False
    # An edit's stated limit, for an order whose limit is its main price (limit, iceberg,
    # lmt...) and for one whose limit is its second price (stop-loss-limit...): which one
    # applies depends on the remembered order's type. None: not changed.
    edit_limits: tuple[Decimal | Relative | None, Decimal | Relative | None] = (None, None)
    size_in_quote: bool = False  # Spot oflags viqc: the volume is in the quote currency
    has_close: bool = False  # Spot close[...]: a second order on fill
    close_type: str | None = None
    validate_only: bool = False


@dataclass(frozen=True)
class Funds:
    """Funds a request moves: to a named withdrawal key, or elsewhere (`key` None)."""

    amount: Decimal
    key: str | None
    leaves_account: bool


def _num(params: dict[str, Any], field: str) -> Decimal | None:
    return _parsed(params, field, parse_amount)


def _price(params: dict[str, Any], field: str) -> Decimal | Relative | None:
    return _parsed(params, field, parse_price)


def _parsed(params: dict[str, Any], field: str, parse: Callable[[object, str], _T]
            ) -> _T | None:
    """`field` read by `parse`; None when absent; refused (unreadable) when it cannot be."""
    if field not in params:
        return None
    try:
        return parse(params[field], field)
    except BadNumber as exc:
        raise Refused("unreadable", str(exc)) from None


def _text(params: dict[str, Any], field: str) -> str | None:
    value = params.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 100:
        raise Refused("unreadable", f"{field} is not text Kraken reads one way")
    return value


def _flag(params: dict[str, Any], field: str) -> bool:
    # python-kraken-sdk sends Python's `True`/`False` in forms, and Kraken takes them; other
    # spellings (`1`, `yes`) might read either way and are refused.
    value = params.get(field)
    text = value.lower() if isinstance(value, str) else None
    if value is None or value is False or text == "false":
        return False
    if value is True or text == "true":
        return True
    raise Refused("unreadable", f"{field} is neither true nor false")


def _abs(price: Decimal | Relative | None) -> Decimal | None:
    return price if isinstance(price, Decimal) else None


def _spot_new(params: dict[str, Any], pair: str | None) -> Order:
    """AddOrder, and one order of AddOrderBatch: the limit is `price` for limit and
    iceberg orders, `price2` for the -limit types, none for the rest."""
    kind = _text(params, "ordertype")
    price, price2 = _price(params, "price"), _price(params, "price2")
    limit = _abs(price) if kind in _SPOT_LIMIT_IN_PRICE else (
        _abs(price2) if kind in _SPOT_LIMIT_IN_PRICE2 else None)
    # Kraken's flags are lower case; read them so, lest `VIQC` pass as no flag.
    oflags = (_text(params, "oflags") or "").lower().split(",")
    close = params.get("close")
    close_type = params.get("close[ordertype]") or (
        close.get("ordertype") if isinstance(close, dict) else None)
    return Order(pair=pair, order_type=kind, volume=_num(params, "volume"), price=limit,
                 reduce_only=_flag(params, "reduce_only"),
                 client_id=_text(params, "cl_ord_id"), size_in_quote="viqc" in oflags,
                 has_close=any(k.startswith("close") for k in params),
                 close_type=close_type if isinstance(close_type, str) else None,
                 validate_only=_flag(params, "validate"))


def _spot_edit(params: dict[str, Any]) -> Order:
    """EditOrder: the fields it reads (pair, volume, price, price2); what it leaves out is
    kept from the order it edits."""
    return Order(pair=_text(params, "pair"), order_type=None, volume=_num(params, "volume"),
                 price=None, reduce_only=False, ref=_ref(params, "txid"),
                 edit_limits=(_price(params, "price"), _price(params, "price2")),
                 validate_only=_flag(params, "validate"))


def _spot_amend(params: dict[str, Any]) -> Order:
    """AmendOrder: `order_qty`, and `limit_price` (the limit whatever the order's type);
    it reads no `volume` or `price`, so neither counts here."""
    amended = _price(params, "limit_price")
    return Order(pair=None, order_type=None, volume=_num(params, "order_qty"), price=None,
                 reduce_only=False, ref=_ref(params, "txid", "cl_ord_id"),
                 edit_limits=(amended, amended))


def _futures_order(params: dict[str, Any], *, ref: str | None = None) -> Order:
    symbol = _text(params, "symbol")
    kind = _text(params, "orderType")
    stated = _num(params, "limitPrice")
    limit = stated if kind in _FUTURES_LIMIT and ref is None else None
    prefix = (symbol or "").upper()[:3]
    return Order(pair=symbol, order_type=kind, volume=_num(params, "size"), price=limit,
                 reduce_only=_flag(params, "reduceOnly"), ref=ref,
                 edit_limits=(stated, stated) if ref is not None else (None, None),
                 client_id=_text(params, "cliOrdId"), inverse=prefix in ("PI_", "FI_"))


def _spot_batch(params: dict[str, Any]) -> list[Order]:
    orders = params.get("orders")
    if not isinstance(orders, list) or not 0 < len(orders) <= _MAX_ORDERS or \
            not all(isinstance(o, dict) for o in orders):
        raise Refused("unreadable", "AddOrderBatch needs a list of orders")
    pair = _text(params, "pair")
    if any("pair" in o for o in orders):
        raise Refused("unreadable", "a batch order names its own pair")
    validate = _flag(params, "validate")
    out = [_spot_new(o, pair) for o in orders]
    return [Order(**{**o.__dict__, "validate_only": validate}) for o in out]


def _futures_batch(params: dict[str, Any]) -> list[Order]:
    raw = params.get("json")
    doc = _decode(raw) if isinstance(raw, str) else None
    batch = doc.get("batchOrder") if isinstance(doc, dict) else None
    if not isinstance(batch, list) or not 0 < len(batch) <= _MAX_ORDERS or \
            not all(isinstance(i, dict) for i in batch):
        raise Refused("unreadable", "batchorder needs a json parameter with a batchOrder list")
    out: list[Order] = []
    for item in batch:
        what = item.get("order")
        if what == "send":
            out.append(_futures_order(item))
        elif what == "edit":
            out.append(_futures_order(item, ref=_ref(item, "order_id", "cliOrdId")))
        elif what != "cancel":
            raise Refused("unreadable", "a batchorder instruction is neither send, edit nor "
                          "cancel")
    return out


def _decode(raw: str) -> Any:
    try:
        return decode_json(raw)
    except BadParams as exc:
        raise Refused("unreadable", str(exc)) from None


def _ref(params: dict[str, Any], *fields: str) -> str:
    given = [f for f in fields if f in params]
    if len(given) != 1:
        raise Refused("unreadable", f"an edit names its order by exactly one of "
                      f"{', '.join(fields)}")
    value = _text(params, given[0]) or ""
    # One name space per kind of id, whichever field names it: Kraken's id, or the client's.
    return ("client:" if given[0] in ("cl_ord_id", "cliOrdId") else "order:") + value


def _funds(exchange: str, path: str, params: dict[str, Any]) -> Funds:
    amount = _num(params, "amount")
    if amount is None:
        raise Refused("unreadable", "a transfer or withdrawal states no amount")
    if exchange == SPOT and path.endswith("/Withdraw"):
        return Funds(amount, _text(params, "key"), leaves_account=True)
    # Futures `withdrawal` goes to the same account's Spot wallet, WalletTransfer the other
    # way; AccountTransfer and transfer/subaccount go to another account.
    leaves = path.endswith(("/AccountTransfer", "/transfer/subaccount"))
    return Funds(amount, None, leaves_account=leaves)


def read_request(exchange: str, path: str, body: str, content_type: str  # noqa: PLR0911
                 ) -> tuple[list[Order], list[Funds]]:
    """The orders and fund movements of one request to `path` (normalised)."""
    if path not in ORDER_PATHS[exchange] and path not in FUNDS_PATHS[exchange]:
        return [], []
    try:
        params = parse_params(body, content_type)
    except BadParams as exc:
        raise Refused("unreadable", str(exc)) from None
    if path in FUNDS_PATHS[exchange]:
        return [], [_funds(exchange, path, params)]
    if exchange == SPOT:
        name = path.rsplit("/", 1)[1]
        if name == "AddOrder":
            return [_spot_new(params, _text(params, "pair"))], []
        if name == "AddOrderBatch":
            return _spot_batch(params), []
        return [_spot_edit(params) if name == "EditOrder" else _spot_amend(params)], []
    if path.endswith("/sendorder"):
        return [_futures_order(params)], []
    if path.endswith("/editorder"):
        return [_futures_order(params, ref=_ref(params, "orderId", "cliOrdId"))], []
    return _futures_batch(params), []


def limit_index(order_type: str | None) -> int | None:
    """Which of an edit's `edit_limits` is the limit of an order of this type; None for a
    type that executes at market."""
    if order_type in _SPOT_LIMIT_IN_PRICE or order_type in _FUTURES_LIMIT:
        return 0
    if order_type in _SPOT_LIMIT_IN_PRICE2:
        return 1
    return None


def pair_names(exchange: str, path: str, body: str, content_type: str) -> list[str]:
    """The pair names a request uses (for the gateway to look their aliases up); [] when it
    cannot be read (the agent refuses it then)."""
    try:
        orders, _ = read_request(exchange, path, body, content_type)
    except Refused:
        return []
    return sorted({o.pair for o in orders if o.pair})

"""The rules: does one request stay inside a grant's policy?

`judge` takes what the request asks for (`orders.read_request`), the policy, the pair
aliases and the orders the grant placed before (for edits), and returns the notional to
charge to the daily budget, or raises `Refused` naming the rule. Pure: no I/O.

Notional is price x volume in the pair's quote currency (Futures linear contracts PF_/FF_:
size x price; inverse contracts PI_/FI_: the size, which is already in USD). The price is
the worst the order can execute at as the request bounds it: Spot `price` for limit and
iceberg orders, `price2` for stop-loss-limit and take-profit-limit; Futures `limitPrice`
for lmt, post, ioc, fok and for stp / take_profit when given. Market, stop-loss,
take-profit, trailing-stop(-limit), settle-position and relative prices (`+5`, `#5`, `5%`)
are not bounded, so under a notional cap they are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from .decimals import Relative, shown
from .memory import Remembered
from .model import Policy
from .orders import Funds, Order, limit_index
from .refused import Refused

__all__ = ["Aliases", "Verdict", "judge", "merge_edit", "notional"]

# name -> every name of the same pair (Kraken's pair name, altname, wsname; a Futures
# symbol), as the public list has them; a name absent from a given map is unknown.
Aliases = Mapping[str, Sequence[str]]
_LINEAR = ("PF_", "FF_")
_INVERSE = ("PI_", "FI_")


_p = shown


def _pair_ok(policy: Policy, pair: str | None, aliases: Aliases | None) -> None:
    if policy.pairs is None:
        return
    if pair is None:
        raise Refused("pair", "the order names no pair")
    allowed = {p.casefold() for p in policy.pairs}
    names = {pair.casefold()}
    if aliases is not None:
        group = aliases.get(pair)
        if not group:
            raise Refused("unknown-pair", f"pair {pair[:40]!r} is not in Kraken's list")
        names |= {n.casefold() for n in group}
    if not names & allowed:
        raise Refused("pair", "pair not in grant policy")


def notional(order: Order, exchange: str) -> Decimal | None:
    """The order's notional as the request bounds it; None when it cannot be bounded."""
    if order.volume is None or order.has_close:
        return None
    if order.size_in_quote:
        return order.volume
    if exchange == "kraken-futures":
        prefix = (order.pair or "").upper()[:3]
        if prefix in _INVERSE:
            return order.volume
        if prefix not in _LINEAR:
            return None
    return None if order.price is None else order.volume * order.price


def merge_edit(edit: Order, before: Order) -> Order:
    """The order as it is after `edit` changes `before` (what the edit does not state is
    kept). An order that executes at market stays unbounded whatever the edit says."""
    index = limit_index(before.order_type)
    price: Decimal | None = None
    if index is not None and before.price is not None:
        stated = edit.edit_limits[index]
        price = before.price if stated is None else (
            None if isinstance(stated, Relative) else stated)
    return replace(before, volume=edit.volume if edit.volume is not None else before.volume,
                   price=price, ref=edit.ref, validate_only=edit.validate_only)


def _one(policy: Policy, exchange: str, order: Order, aliases: Aliases | None
         ) -> Decimal:
    _pair_ok(policy, order.pair, aliases)
    if policy.order_types is not None and order.order_type not in policy.order_types:
        raise Refused("order-type", f"order type {str(order.order_type)[:30]!r} not in grant "
                      "policy")
    if policy.order_types is not None and order.has_close and \
            order.close_type not in policy.order_types:
        raise Refused("order-type", f"close order type {str(order.close_type)[:30]!r} not "
                      "in grant policy")
    if order.volume == 0 and (policy.max_order_volume is not None or policy.caps_notional):
        # Kraken reads volume 0 on a closing margin order as the whole position.
        raise Refused("order-volume", "volume 0 (the whole position) under a size cap")
    if policy.reduce_only and not order.reduce_only:
        raise Refused("reduce-only", "the grant allows reduce-only orders only")
    if policy.max_order_volume is not None:
        if order.volume is None or order.size_in_quote:
            raise Refused("order-volume", "the order's volume in base units is not stated")
        if order.volume > policy.max_order_volume:
            raise Refused("order-volume", f"volume {_p(order.volume)} above "
                          f"{_p(policy.max_order_volume)}")
    if not policy.caps_notional:
        return Decimal(0)
    value = notional(order, exchange)
    if value is None:
        raise Refused("unbounded-price", "the order's price is not bounded (a market or "
                      "stop order, a relative price or a close order) and the grant caps "
                      "notional")
    if policy.max_order_notional is not None and value > policy.max_order_notional:
        raise Refused("order-notional", f"notional {_p(value)} above "
                      f"{_p(policy.max_order_notional)}")
    return value


@dataclass
class Verdict:
    """An allowed request: the notional to charge, and the remembered orders its edits
    change (applied once the charge is taken)."""

    charge: Decimal = Decimal(0)
    updates: list[tuple[Remembered, Order]] = field(default_factory=list)


def judge(policy: Policy, exchange: str, orders: Sequence[Order], funds: Sequence[Funds],
          aliases: Aliases | None, recall: Callable[[str], list[Remembered]]) -> Verdict:
    """The verdict on this request (every order in it, all or nothing), or Refused.
    `recall(ref)` gives the orders an edit's id named before ([]: unknown)."""
    verdict = Verdict()
    if policy.guards_orders:
        for order in orders:
            if order.ref is None:
                charge = _one(policy, exchange, order, aliases)
            else:
                charge = _edit(policy, exchange, order, aliases, recall(order.ref), verdict)
            if not order.validate_only:
                verdict.charge += charge
    for move in funds:
        _funds(policy, move)
    return verdict


def _edit(policy: Policy, exchange: str, edit: Order, aliases: Aliases | None,
          before: list[Remembered], verdict: Verdict) -> Decimal:
    if not before:
        raise Refused("edit-unknown-order", "the edit names an order this grant's agent did "
                      "not place (or no longer remembers), so what it changes is unknown")
    if edit.pair is not None:
        _pair_ok(policy, edit.pair, aliases)
    charge = Decimal(0)
    for held in before:
        old = held.order
        if edit.pair is not None and aliases is not None and old.pair is not None and \
                edit.pair.casefold() not in {n.casefold() for n in aliases.get(old.pair, ())} \
                and edit.pair.casefold() != old.pair.casefold():
            raise Refused("edit-unknown-order", "the edit names another pair than the order")
        merged = merge_edit(edit, old)
        after = _one(policy, exchange, merged, aliases)
        was = notional(old, exchange) or Decimal(0)
        charge = max(charge, after - was)
        if not edit.validate_only:
            verdict.updates.append((held, replace(merged, ref=None, validate_only=False)))
    return charge


def _funds(policy: Policy, move: Funds) -> None:
    if policy.withdraw_keys is not None:
        if move.leaves_account and move.key is None:
            raise Refused("withdraw-key", "funds would leave the account to no withdrawal "
                          "key of the grant policy")
        if move.key is not None and move.key not in policy.withdraw_keys:
            raise Refused("withdraw-key", "withdrawal key not in grant policy")
    cap = policy.max_withdraw_amount
    if cap is not None and move.amount > cap:
        raise Refused("withdraw-amount", f"amount {_p(move.amount)} above {_p(cap)}")

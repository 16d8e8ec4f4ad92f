"""A grant's trading policy: what a bot may trade and move, beyond its scopes.

Every field is optional; a policy with none set (`Policy()`) is no policy, and a grant
carrying it behaves exactly as a grant without one. Decimals are kept as `Decimal` and
written as their exact strings, so a cap is never rounded on the way to disk and back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any

from ..errors import FormatError, InvalidInputError
from .decimals import BadNumber, parse_amount

__all__ = ["CLEAR", "FUTURES_ORDER_TYPES", "SPOT_ORDER_TYPES", "Policy", "parse_policy"]

# Kraken's order type names (Spot AddOrder `ordertype`; Futures sendorder `orderType`).
SPOT_ORDER_TYPES = frozenset({
    "market", "limit", "iceberg", "stop-loss", "take-profit", "stop-loss-limit",
    "take-profit-limit", "trailing-stop", "trailing-stop-limit", "settle-position"})
FUTURES_ORDER_TYPES = frozenset({"lmt", "post", "ioc", "mkt", "stp", "take_profit",
                                 "trailing_stop", "fok"})
CLEAR = "none"  # `grant edit --pairs none`: lift that limit
_NAME = re.compile(r"[A-Za-z0-9_./:-]{1,40}")
_MAX_NAMES = 200
_DECIMAL_FIELDS = ("max_order_volume", "max_order_notional", "max_daily_notional",
                   "max_withdraw_amount")
_LIST_FIELDS = ("pairs", "order_types", "withdraw_keys")


@dataclass(frozen=True)
class Policy:
    """The limits on one grant. None: no limit on that axis."""

    pairs: tuple[str, ...] | None = None
    order_types: tuple[str, ...] | None = None
    max_order_volume: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_daily_notional: Decimal | None = None
    reduce_only: bool = False
    withdraw_keys: tuple[str, ...] | None = None
    max_withdraw_amount: Decimal | None = None

    @property
    def empty(self) -> bool:
        return self == Policy()

    @property
    def caps_notional(self) -> bool:
        return self.max_order_notional is not None or self.max_daily_notional is not None

    @property
    def guards_funds(self) -> bool:
        return self.withdraw_keys is not None or self.max_withdraw_amount is not None

    @property
    def guards_orders(self) -> bool:
        return any(getattr(self, f) is not None for f in (
            "pairs", "order_types", "max_order_volume", "max_order_notional",
            "max_daily_notional")) or self.reduce_only

    def to_doc(self) -> dict[str, Any] | None:
        """JSON-ready (decimals as exact strings); None for no policy."""
        if self.empty:
            return None
        doc: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value is False:
                continue
            doc[f.name] = list(value) if isinstance(value, tuple) else (
                str(value) if isinstance(value, Decimal) else value)
        return doc

    @classmethod
    def from_doc(cls, doc: object) -> Policy:
        """The policy a grant record (or the agent's answer) holds; FormatError if malformed."""
        if doc is None:
            return cls()
        if not isinstance(doc, Mapping) or not set(doc) <= {f.name for f in fields(cls)}:
            raise FormatError("a grant's trading policy is malformed")
        try:
            values: dict[str, Any] = {}
            for name in _LIST_FIELDS:
                if name in doc:
                    values[name] = _names(doc[name], name)
            for name in _DECIMAL_FIELDS:
                if name in doc:
                    values[name] = parse_amount(doc[name], name)
        except (ValueError, TypeError):
            raise FormatError("a grant's trading policy is malformed") from None
        if "reduce_only" in doc:
            if not isinstance(doc["reduce_only"], bool):
                raise FormatError("a grant's trading policy is malformed")
            values["reduce_only"] = doc["reduce_only"]
        return cls(**values)

    def describe(self) -> list[str]:
        """One `name: value` line per limit, for `grant show`."""
        doc = self.to_doc() or {}
        return [f"{k.replace('_', '-')}: {','.join(v) if isinstance(v, list) else v}"
                for k, v in doc.items()]


def _names(value: object, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InvalidInputError(f"{field} must be a comma-separated list")
    if not items or len(items) > _MAX_NAMES or not all(
            isinstance(v, str) and _NAME.fullmatch(v) for v in items):
        raise InvalidInputError(f"{field} must be 1 to {_MAX_NAMES} names of letters, digits "
                                "and . _ / : -", hint="for example: --pairs XBTUSD,ETHUSD")
    return tuple(dict.fromkeys(items))


def _cap(value: str, field: str) -> Decimal:
    try:
        number = parse_amount(value, field)
    except BadNumber as exc:
        raise InvalidInputError(f"--{field.replace('_', '-')}: {exc}",
                                hint="give a plain decimal such as 0.5 or 1000") from None
    if number <= 0:
        raise InvalidInputError(f"--{field.replace('_', '-')} must be above 0")
    return number


def parse_policy(options: Mapping[str, object], *, base: Policy | None = None,
                 order_type_names: Iterable[str] = SPOT_ORDER_TYPES | FUTURES_ORDER_TYPES
                 ) -> Policy:
    """A policy from command-line values (strings; None: not given). With `base` (grant
    edit), what is given replaces that field and the value `none` lifts the limit."""
    policy = base or Policy()
    changes: dict[str, Any] = {}
    known = frozenset(order_type_names)
    for name in _LIST_FIELDS + _DECIMAL_FIELDS:
        value = options.get(name)
        if value is None:
            continue
        if value == CLEAR and base is not None:
            changes[name] = None
            continue
        if name in _DECIMAL_FIELDS:
            changes[name] = _cap(str(value), name)
            continue
        names = _names(value, name)
        if name == "order_types" and not set(names) <= known:
            unknown = ", ".join(sorted(set(names) - known))
            raise InvalidInputError(f"unknown order type(s): {unknown}",
                                    hint="Kraken's names: " + ", ".join(sorted(known)))
        changes[name] = names
    reduce_only = options.get("reduce_only")
    if reduce_only is not None:
        changes["reduce_only"] = bool(reduce_only)
    return replace(policy, **changes)

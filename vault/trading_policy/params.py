"""A request's parameters, parsed once and strictly, so the policy reads what Kraken reads.

Form bodies (`application/x-www-form-urlencoded`, and the query strings Futures signs) and
JSON bodies are taken; anything with two readings is refused: a key given twice (Kraken may
take the first or the last), two keys that differ only in case, a JSON object with a
repeated key, NaN or Infinity. JSON numbers keep the exact text the decoder saw, so
`1e3` in JSON is refused by the same number grammar as `volume=1e3` in a form.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["BadParams", "decode_json", "parse_params"]

MAX_FIELDS = 1000


class BadParams(ValueError):
    """Parameters that cannot be read one way only."""


class _Number(str):
    """A JSON number's exact text (a str, so the decimal grammar judges it)."""


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return _unique(pairs)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    folded: set[str] = set()
    for key, value in pairs:
        low = key.casefold()
        if low in folded:
            raise BadParams(f"parameter {key[:40]!r} is given twice")
        folded.add(low)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise BadParams(f"{name} is not a number Kraken takes")


def decode_json(text: str) -> Any:
    """JSON with duplicate keys, NaN and Infinity refused, and numbers kept as their text."""
    try:
        return json.loads(text, object_pairs_hook=_pairs_hook, parse_float=_Number,
                          parse_int=_Number, parse_constant=_no_constant)
    except BadParams:
        raise
    except (ValueError, RecursionError):
        raise BadParams("the body is not JSON") from None


def parse_params(text: str, content_type: str) -> dict[str, Any]:
    """The parameters of a body (`content_type` "form" or "json")."""
    if content_type == "json":
        doc = decode_json(text) if text.strip() else {}
        if not isinstance(doc, dict):
            raise BadParams("the JSON body is not an object")
        return doc
    if not text:
        return {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                          errors="strict", max_num_fields=MAX_FIELDS)
    except (ValueError, UnicodeDecodeError):
        raise BadParams("the form body is malformed") from None
    return _unique(pairs)

"""ccxt and freqtrade JSON files: strict JSON, or freqtrade's dialect with comments and
trailing commas, with the line of every key."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..secret import Secret
from .candidate import Candidate
from .profiles import profile_for, suggested_name
from .textfile import LineIndex, read_text

_MAX_JSON_DEPTH = 64


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers the line of each key (for "path:line" sources)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[str, int] = {}


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")
_JSON_SPACE = re.compile(r"[ \t\r\n]*")
_REST_OF_LINE = re.compile(r"[^\r\n]*")


class _JsonParser:
    """Strict JSON, optionally with comments and trailing commas (freqtrade's dialect).

    Structure is parsed here so every key has a line; each string and number token is
    decoded by the json module, so values mean exactly what they mean in JSON.
    """

    def __init__(self, text: str, where: Path, *, lenient: bool) -> None:
        self.text, self.where, self.lenient, self.pos = text, where, lenient, 0
        self.lines = LineIndex(text)

    def fail(self, what: str) -> InvalidInputError:
        return InvalidInputError(f"{self.where}:{self.lines.at(self.pos)}: {what}")

    def document(self) -> Any:
        self.space()
        value = self.value(0)
        self.space()
        if self.pos != len(self.text):
            raise self.fail("unexpected text after the JSON document")
        return value

    def skip(self, pattern: re.Pattern[str]) -> None:
        m = pattern.match(self.text, self.pos)
        self.pos = m.end() if m else self.pos

    def space(self) -> None:
        """Whitespace, and in the lenient dialect // and /* */ comments."""
        while True:
            self.skip(_JSON_SPACE)
            if not self.lenient or not self.text.startswith("/", self.pos):
                return
            if self.text.startswith("//", self.pos):
                self.skip(_REST_OF_LINE)
            elif self.text.startswith("/*", self.pos):
                close = self.text.find("*/", self.pos + 2)
                if close < 0:
                    raise self.fail("unterminated /* comment")
                self.pos = close + 2
            else:
                return

    def value(self, depth: int) -> Any:
        if depth > _MAX_JSON_DEPTH:
            raise self.fail(f"nested deeper than {_MAX_JSON_DEPTH} levels")
        char = self.text[self.pos:self.pos + 1]
        if char == "{":
            return self.object(depth)
        if char == "[":
            return self.array(depth)
        if char == '"':
            return self.string()
        m = _SCALAR.match(self.text, self.pos)
        if m is None:
            raise self.fail("expected a JSON value" if char else "unexpected end of file")
        try:
            scalar = json.loads(m.group(0))
        except ValueError:
            # A number beyond Python's int-string limit (sys.get_int_max_str_digits), or
            # one float cannot hold: refused by position, never a crash.
            raise self.fail(f"a number of {len(m.group(0))} characters, too long to read"
                            ) from None
        self.pos = m.end()
        return scalar

    def string(self) -> str:
        m = _STRING.match(self.text, self.pos)
        if m is None:
            raise self.fail("unterminated string")
        try:
            decoded: str = json.loads(m.group(0))
        except ValueError:
            raise self.fail("invalid string (a bad escape or a raw control character)"
                            ) from None
        self.pos = m.end()
        return decoded

    def members(self, close: str, depth: int, member: Callable[[int], object]) -> None:
        """Parse `member` items separated by commas up to `close`."""
        self.pos += 1
        self.space()
        if self.text.startswith(close, self.pos):
            self.pos += 1
            return
        while True:
            member(depth + 1)
            self.space()
            if self.text.startswith(close, self.pos):
                self.pos += 1
                return
            if not self.text.startswith(",", self.pos):
                raise self.fail(f"expected ',' or '{close}'")
            self.pos += 1
            self.space()
            if self.lenient and self.text.startswith(close, self.pos):
                self.pos += 1
                return

    def object(self, depth: int) -> _JsonObject:
        result = _JsonObject()

        def member(inner: int) -> None:
            if not self.text.startswith('"', self.pos):
                raise self.fail("expected a quoted key")
            line = self.lines.at(self.pos)
            key = self.string()
            self.space()
            if not self.text.startswith(":", self.pos):
                raise self.fail("expected ':' after a key")
            self.pos += 1
            self.space()
            result[key] = self.value(inner)  # a repeated key: the last wins, as in json
            result.lines[key] = line

        self.members("}", depth, member)
        return result

    def array(self, depth: int) -> list[Any]:
        result: list[Any] = []
        self.members("]", depth, lambda inner: result.append(self.value(inner)))
        return result


def _load_json(path: Path, *, lenient: bool) -> _JsonObject:
    doc = _JsonParser(read_text(path), path, lenient=lenient).document()
    if not isinstance(doc, _JsonObject):
        raise InvalidInputError(f"{path}: expected a JSON object at the top")
    return doc


def _json_text(where: Path, obj: _JsonObject, field_name: str) -> str:
    value = obj.get(field_name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}:{obj.lines[field_name]}: \"{field_name}\" is not a "
                                "string")
    return value


def _json_pair(where: Path, obj: _JsonObject, key_field: str, secret_field: str, *,
               name: str | None, exchange: str | None, notes: tuple[str, ...] = ()
               ) -> Candidate | None:
    key = _json_text(where, obj, key_field)
    secret = _json_text(where, obj, secret_field)
    if not key and not secret:
        return None
    if not key:
        raise InvalidInputError(f"{where}:{obj.lines[secret_field]}: \"{secret_field}\" is "
                                f"set but \"{key_field}\" is not")
    if not secret:
        raise InvalidInputError(f"{where}:{obj.lines[key_field]}: \"{key_field}\" is set but "
                                f"\"{secret_field}\" is missing or empty")
    return Candidate(name, exchange, key, Secret(secret), f"{where}:{obj.lines[key_field]}",
                     notes)


def _ccxt_notes(obj: _JsonObject) -> tuple[str, ...]:
    extra = [f for f in ("password", "uid", "privateKey") if obj.get(f)]
    if not extra:
        return ()
    return (f"the profile also has {', '.join(extra)}; botvault keeps only the key and "
            "secret",)


def read_ccxt(path: Path) -> list[Candidate]:
    """Pairs in a ccxt-style JSON file: one {"apiKey", "secret"} object (exchange unknown),
    or an object of them keyed by ccxt exchange id ("kraken", "krakenfutures", ...)."""
    doc = _load_json(path, lenient=False)
    if "apiKey" in doc or "secret" in doc:
        single = _json_pair(path, doc, "apiKey", "secret", name=None, exchange=None,
                            notes=_ccxt_notes(doc))
        return [single] if single else []
    found = []
    for exchange_id, profile in doc.items():
        if isinstance(profile, _JsonObject) and ("apiKey" in profile or "secret" in profile):
            candidate = _json_pair(path, profile, "apiKey", "secret",
                                   name=suggested_name(exchange_id),
                                   exchange=profile_for(exchange_id),
                                   notes=_ccxt_notes(profile))
            if candidate:
                found.append(candidate)
    return found


def read_freqtrade(path: Path) -> list[Candidate]:
    """The pair in a freqtrade config (exchange.key / exchange.secret). Empty values (a
    config that takes the key from the environment) give no candidate."""
    doc = _load_json(path, lenient=True)
    exchange = doc.get("exchange")
    if not isinstance(exchange, _JsonObject):
        raise InvalidInputError(f"{path}: no \"exchange\" object; is this a freqtrade config?")
    exchange_id = exchange.get("name")
    profile = profile_for(exchange_id) if isinstance(exchange_id, str) and exchange_id else None
    candidate = _json_pair(path, exchange, "key", "secret",
                           name=suggested_name(doc.get("bot_name")), exchange=profile)
    return [candidate] if candidate else []

"""Find key pairs in the files people keep them in today: .env files, ccxt and freqtrade JSON.

Each reader returns `Candidate`s: a pair as found, not yet validated (`Vault.add` does
that). The parsers are small and strict: a line they cannot read is an error that names the
file and line, where a lenient parser would skip it and perhaps import the wrong value.
Messages name files, lines and variable names, never a value.

- `.env`: the dialect python-dotenv reads (``export``, single and double quotes, escapes in
  double quotes, ``#`` comments, quoted values over several lines), without variable
  expansion: ``${VAR}`` is kept literally, and the candidate notes it.
- ccxt: ``{"apiKey": ..., "secret": ...}``, or one such object per exchange id.
- freqtrade: ``exchange.key`` / ``exchange.secret`` / ``exchange.name``, with the ``//`` and
  ``/* */`` comments and trailing commas freqtrade's own parser (rapidjson) accepts.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .entries import NAME_RE
from .errors import InvalidInputError
from .secret import Secret

__all__ = ["MAX_FILE_BYTES", "Candidate", "read_ccxt", "read_env", "read_freqtrade"]

MAX_FILE_BYTES = 1024 * 1024
_MAX_JSON_DEPTH = 64

# (key variable, secret variable, exchange profile); None: the exchange is not known.
_ENV_PAIRS: tuple[tuple[str, str, str | None], ...] = (
    ("KRAKEN_API_KEY", "KRAKEN_API_SECRET", "kraken-spot"),
    ("KRAKEN_FUTURES_API_KEY", "KRAKEN_FUTURES_API_SECRET", "kraken-futures"),
    ("FREQTRADE__EXCHANGE__KEY", "FREQTRADE__EXCHANGE__SECRET", None),
)
_FREQTRADE_NAME_VAR = "FREQTRADE__EXCHANGE__NAME"
# ccxt / freqtrade exchange ids -> botvault profiles.
_PROFILES = {"kraken": "kraken-spot", "krakenfutures": "kraken-futures"}


@dataclass(frozen=True)
class Candidate:
    """One key pair found in a file. `source` is "path:line"; `notes` are things the user
    should hear about (a duplicate variable, ``${...}`` taken literally), never values."""

    name: str | None
    exchange: str | None
    api_key: str
    api_secret: Secret = field(repr=False)
    source: str
    notes: tuple[str, ...] = ()


def _profile_for(exchange_id: str) -> str:
    return _PROFILES.get(exchange_id.strip().lower(), "generic")


def _entry_name(value: object) -> str | None:
    """A suggested entry name, only when it is already a valid one."""
    return value if isinstance(value, str) and NAME_RE.fullmatch(value) else None


# -- reading files -------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """The file as text: regular, at most 1 MiB, UTF-8 (a BOM is dropped)."""
    try:
        # O_NONBLOCK: opening a FIFO someone named by mistake must not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InvalidInputError(f"cannot read {path}: no such file") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInputError(f"cannot read {path}: not a regular file")
        data = _read_at_most(fd, MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInputError(f"{path} is larger than 1 MiB; that is not a key file",
                                hint="point the import at the .env or config file itself")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInputError(f"{path}:{line}: not valid UTF-8 text") from None
    return text.removeprefix("\ufeff")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(limit - size, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _Lines:
    """Line numbers (from 1) of offsets in a text; \\r\\n, \\n and \\r each end a line."""

    def __init__(self, text: str) -> None:
        self._ends = [m.end() for m in re.finditer(r"\r\n|\n|\r", text)]

    def at(self, offset: int) -> int:
        return bisect.bisect_right(self._ends, offset) + 1


# -- .env ----------------------------------------------------------------------------------

# The grammar of python-dotenv's parser, so a file means here what it means to the bot.
_BLANK = re.compile(r"\s*")
_SPACES = re.compile(r"[^\S\r\n]*")
_EXPORT = re.compile(r"(?:export[^\S\r\n]+)?")
_SINGLE_QUOTED_KEY = re.compile(r"'([^']+)'")
_UNQUOTED_KEY = re.compile(r"[^=\#\s]+")
_EQUALS = re.compile(r"=[^\S\r\n]*")
_SINGLE_QUOTED = re.compile(r"'((?:\\.|[^'\\])*)'", re.DOTALL)
_DOUBLE_QUOTED = re.compile(r'"((?:\\.|[^"\\])*)"', re.DOTALL)
_UNQUOTED = re.compile(r"[^\r\n]*")
_COMMENT = re.compile(r"(?:[^\S\r\n]*#[^\r\n]*)?")
_END_OF_LINE = re.compile(r"[^\S\r\n]*(?:\r\n|\n|\r|$)")
_DOUBLE_ESCAPES = re.compile(r"\\[\\'\"abfnrtv]")
_SINGLE_ESCAPES = re.compile(r"\\[\\']")
_ESCAPED = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t", "v": "\v"}


@dataclass(frozen=True)
class _Binding:
    key: str
    value: str | None  # None: the name stands alone, without "="
    line: int
    quote: str  # "'", '"' or "" (unquoted)


def _unescape(pattern: re.Pattern[str], raw: str) -> str:
    return pattern.sub(lambda m: _ESCAPED[m.group(0)[1]], raw)


class _DotenvParser:
    def __init__(self, text: str, where: Path) -> None:
        self.text, self.where, self.pos = text, where, 0
        self.lines = _Lines(text)

    def fail(self, what: str, offset: int | None = None) -> InvalidInputError:
        line = self.lines.at(self.pos if offset is None else offset)
        return InvalidInputError(f"{self.where}:{line}: {what}",
                                 hint="fix that line, or quote the value")

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        m = pattern.match(self.text, self.pos)
        if m:
            self.pos = m.end()
        return m

    def bindings(self) -> list[_Binding]:
        found: list[_Binding] = []
        while True:
            self.match(_BLANK)
            if self.pos >= len(self.text):
                return found
            binding = self.binding()
            if binding is not None:
                found.append(binding)

    def binding(self) -> _Binding | None:
        start = self.pos
        self.match(_EXPORT)
        key = self.key()
        self.match(_SPACES)
        value, quote = None, ""
        equals = self.match(_EQUALS) if key is not None else None
        if equals is not None:
            # "KEY= # note" is an empty value; "KEY=#x" is the value "#x" (as python-dotenv).
            if len(equals.group(0)) > 1 and self.text.startswith("#", self.pos):
                value = ""
            else:
                value, quote = self.value()
        self.match(_COMMENT)
        if self.match(_END_OF_LINE) is None:
            raise self.fail("unexpected text after the value (a stray quote or space?)")
        return None if key is None else _Binding(key, value, self.lines.at(start), quote)

    def key(self) -> str | None:
        if self.text.startswith("#", self.pos):
            return None  # a comment line
        if self.text.startswith("'", self.pos):
            m = self.match(_SINGLE_QUOTED_KEY)
            if m is None:
                raise self.fail("unterminated quoted variable name")
            return m.group(1)
        m = self.match(_UNQUOTED_KEY)
        if m is None:
            raise self.fail("expected NAME=value")
        return m.group(0)

    def value(self) -> tuple[str, str]:
        start = self.pos
        char = self.text[self.pos:self.pos + 1]
        if char in ("'", '"'):
            single = char == "'"
            m = self.match(_SINGLE_QUOTED if single else _DOUBLE_QUOTED)
            if m is None:
                kind = "single" if single else "double"
                raise self.fail(f"unterminated {kind}-quoted value", start)
            return _unescape(_SINGLE_ESCAPES if single else _DOUBLE_ESCAPES, m.group(1)), char
        m = self.match(_UNQUOTED)
        return _strip_inline_comment(m.group(0) if m else ""), ""


def _strip_inline_comment(raw: str) -> str:
    """python-dotenv's `re.sub(r"\\s+#.*", "", raw).rstrip()`, in linear time: a "#" after
    whitespace starts a comment (a long run of spaces made that regex quadratic)."""
    hash_at = raw.find("#", 1)
    while hash_at > 0 and not raw[hash_at - 1].isspace():
        hash_at = raw.find("#", hash_at + 1)
    return (raw[:hash_at] if hash_at > 0 else raw).rstrip()


def _env_notes(where: Path, bindings: list[_Binding], names: tuple[str, ...]) -> list[str]:
    """What the user should know about how `names` were read from the file."""
    notes = []
    for name in names:
        lines = [b.line for b in bindings if b.key == name]
        if len(lines) > 1:
            notes.append(f"{name} is set {len(lines)} times in {where} (lines "
                         f"{', '.join(map(str, lines))}); the last one is used")
        last = next((b for b in reversed(bindings) if b.key == name), None)
        # python-dotenv would expand ${VAR} here; a secret is taken as written instead.
        if last and last.value and last.quote != "'" and "${" in last.value:
            notes.append(f"{name} ({where}:{last.line}) contains ${{...}}; it was taken "
                         "literally, not expanded")
    return notes


def _env_pair(where: Path, bindings: list[_Binding], key_var: str, secret_var: str,
              exchange: str | None) -> Candidate | None:
    values = {b.key: b for b in bindings}  # the last assignment wins, as in a shell
    key, secret = values.get(key_var), values.get(secret_var)
    if not (key and key.value) and not (secret and secret.value):
        return None  # absent, or an empty template line
    if not (key and key.value):
        line = secret.line if secret else 0
        raise InvalidInputError(f"{where}:{line}: {secret_var} is set but {key_var} is not")
    if not (secret and secret.value):
        raise InvalidInputError(f"{where}:{key.line}: {key_var} is set but {secret_var} "
                                "is missing or empty")
    notes = _env_notes(where, bindings, (key_var, secret_var))
    return Candidate(None, exchange, key.value, Secret(secret.value), f"{where}:{key.line}",
                     tuple(notes))


def read_env(path: Path, *, key_var: str | None = None,
             secret_var: str | None = None) -> list[Candidate]:
    """Key pairs in a .env file: the Kraken spot and futures variables and freqtrade's, or
    exactly the pair `key_var` / `secret_var` when given (then it must be there)."""
    if (key_var is None) != (secret_var is None):
        raise InvalidInputError("give both the key variable and the secret variable")
    # Universal newlines, as python-dotenv reads: a CRLF inside a quoted value reads as LF.
    text = _read_text(path).replace("\r\n", "\n").replace("\r", "\n")
    bindings = _DotenvParser(text, path).bindings()
    pairs = _ENV_PAIRS
    if key_var is not None and secret_var is not None:
        if not any(b.key == key_var for b in bindings):
            raise InvalidInputError(f"{path}: no variable {key_var}")
        known = {k: e for k, _, e in _ENV_PAIRS}
        pairs = ((key_var, secret_var, known.get(key_var)),)
    found = []
    for k, s, exchange in pairs:
        profile = _freqtrade_profile(bindings) if k == "FREQTRADE__EXCHANGE__KEY" else exchange
        candidate = _env_pair(path, bindings, k, s, profile)
        if candidate is not None:
            found.append(candidate)
    return found


def _freqtrade_profile(bindings: list[_Binding]) -> str | None:
    """FREQTRADE__EXCHANGE__NAME, when the file sets it, tells the exchange."""
    name = next((b.value for b in reversed(bindings) if b.key == _FREQTRADE_NAME_VAR), None)
    return _profile_for(name) if name else None


# -- JSON (ccxt, freqtrade) ----------------------------------------------------------------


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
        self.lines = _Lines(text)

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
        self.pos = m.end()
        return json.loads(m.group(0))

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
    doc = _JsonParser(_read_text(path), path, lenient=lenient).document()
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
                                   name=_entry_name(exchange_id),
                                   exchange=_profile_for(exchange_id),
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
    profile = _profile_for(exchange_id) if isinstance(exchange_id, str) and exchange_id else None
    candidate = _json_pair(path, exchange, "key", "secret", name=_entry_name(doc.get("bot_name")),
                           exchange=profile)
    return [candidate] if candidate else []

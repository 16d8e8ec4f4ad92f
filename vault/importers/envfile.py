"""`.env` files, in the dialect python-dotenv reads, without variable expansion."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInputError
from ..exchanges.profiles import KRAKEN_FUTURES, KRAKEN_SPOT, VAR_NAMES
from ..secret import Secret
from .candidate import Candidate
from .profiles import profile_for
from .textfile import LineIndex, read_text

# (key variable, secret variable, exchange profile); None: the exchange is not known.
_ENV_PAIRS: tuple[tuple[str, str, str | None], ...] = (
    (*VAR_NAMES[KRAKEN_SPOT], KRAKEN_SPOT),
    (*VAR_NAMES[KRAKEN_FUTURES], KRAKEN_FUTURES),
    ("FREQTRADE__EXCHANGE__KEY", "FREQTRADE__EXCHANGE__SECRET", None),
)
_FREQTRADE_NAME_VAR = "FREQTRADE__EXCHANGE__NAME"

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
        self.lines = LineIndex(text)

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
    text = read_text(path).replace("\r\n", "\n").replace("\r", "\n")
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
    return profile_for(name) if name else None

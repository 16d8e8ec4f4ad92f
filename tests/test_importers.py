"""botvault.importers: .env, ccxt and freqtrade files, read back exactly, errors without secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botvault.errors import InvalidInputError
from botvault.importers import MAX_FILE_BYTES, Candidate, read_ccxt, read_env, read_freqtrade

# Valid but awkward: quotes of both kinds, = and #, backslashes, spaces at the ends,
# non-ASCII, ${...} that a shell or python-dotenv would expand.
HOSTILE = [
    "plain",
    "with space",
    "  padded  ",
    "a=b=c",
    "hash#inside # and after",
    "'single' \"double\"",
    "back\\slash\\n\\\\",
    "ключ-€-🔑-ü",
    "${HOME} $USER",
    "tab\there",
    "new\nline\r\nand cr",
    "x" * 200_000,
]


def _double_quoted(value: str) -> str:
    """How a careful writer puts any value into a .env file (python-dotenv's escapes)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def _single_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _write(path: Path, text: str, *, newline: str = "\n", bom: bool = False) -> Path:
    data = text.replace("\n", newline)
    path.write_bytes(("\ufeff" if bom else "").encode() + data.encode("utf-8"))
    return path


def _only(found: list[Candidate]) -> Candidate:
    (candidate,) = found
    return candidate


# -- .env ----------------------------------------------------------------------------------


# Single quotes have no escape for a carriage return (a raw one is read as a newline).
_QUOTED = [("double", v) for v in HOSTILE] + [("single", v) for v in HOSTILE if "\r" not in v]


@pytest.mark.parametrize(("quote", "value"), _QUOTED, ids=range(len(_QUOTED)))
def test_env_round_trip(tmp_path: Path, value: str, quote: str) -> None:
    write = _double_quoted if quote == "double" else _single_quoted
    path = _write(tmp_path / ".env", f"KRAKEN_API_KEY={write('k' + value)}\n"
                                     f"KRAKEN_API_SECRET={write(value)}\n")
    found = _only(read_env(path))
    assert (found.api_key, found.api_secret.reveal()) == ("k" + value, value)
    assert (found.exchange, found.source, found.name) == ("kraken-spot", f"{path}:1", None)
    assert dotenv_values(path, interpolate=False)["KRAKEN_API_SECRET"] == value


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("bom", [False, True])
def test_env_dialect(tmp_path: Path, newline: str, bom: bool) -> None:
    text = (
        "# a comment\n"
        "\n"
        "   \n"
        "export KRAKEN_API_KEY=abc=def#x   # a trailing comment\n"
        "KRAKEN_API_SECRET = \"multi\nline 'quoted' \\\"value\\\"\"\n"
        "  'KRAKEN_FUTURES_API_KEY'='fk'\n"
        "export   KRAKEN_FUTURES_API_SECRET=unquoted value with spaces  \n"
        "EMPTY= # only a comment\n"
        "NO_VALUE\n"
        "HASH=#not-a-comment\n"
    )
    path = _write(tmp_path / ".env", text, newline=newline, bom=bom)
    spot, futures = read_env(path)
    inner = "multi\nline 'quoted' \"value\""  # any line ending reads as \n, as in dotenv
    assert (spot.api_key, spot.api_secret.reveal(), spot.source) == ("abc=def#x", inner,
                                                                     f"{path}:4")
    assert (futures.exchange, futures.api_key, futures.api_secret.reveal()) == (
        "kraken-futures", "fk", "unquoted value with spaces")
    expected = dotenv_values(path, interpolate=False)
    assert expected["KRAKEN_API_SECRET"] == inner
    assert expected["KRAKEN_FUTURES_API_SECRET"] == "unquoted value with spaces"
    assert (expected["EMPTY"], expected["NO_VALUE"], expected["HASH"]) == ("", None,
                                                                          "#not-a-comment")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=60))
def test_env_any_text_round_trips(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path / "h.env", f"A=1\nMY_KEY=key\nMY_SECRET={_double_quoted(value)}\n")
    found = _only(read_env(path, key_var="MY_KEY", secret_var="MY_SECRET"))
    assert found.api_secret.reveal() == value
    assert found.exchange is None
    assert dotenv_values(path, interpolate=False)["MY_SECRET"] == value


def test_env_expansion_taken_literally_and_noted(tmp_path: Path) -> None:
    path = _write(tmp_path / ".env", "KRAKEN_API_KEY=k\nKRAKEN_API_SECRET=\"${OTHER}x\"\n")
    found = _only(read_env(path))
    assert found.api_secret.reveal() == "${OTHER}x"
    assert any("taken literally" in note for note in found.notes)
    single = _write(tmp_path / "s.env", "KRAKEN_API_KEY=k\nKRAKEN_API_SECRET='${OTHER}'\n")
    assert _only(read_env(single)).notes == ()  # single quotes never expand


def test_env_duplicate_keys_last_wins(tmp_path: Path) -> None:
    path = _write(tmp_path / ".env", "KRAKEN_API_KEY=k\nKRAKEN_API_SECRET=first\n"
                                     "KRAKEN_API_SECRET=second\n")
    found = _only(read_env(path))
    assert found.api_secret.reveal() == "second"
    assert found.notes == (f"KRAKEN_API_SECRET is set 2 times in {path} (lines 2, 3); the "
                           "last one is used",)
    assert dotenv_values(path)["KRAKEN_API_SECRET"] == "second"


def test_env_freqtrade_and_custom_vars(tmp_path: Path) -> None:
    path = _write(tmp_path / ".env", "FREQTRADE__EXCHANGE__KEY=fk\nFREQTRADE__EXCHANGE__SECRET=fs"
                                     "\nBOT_KEY=bk\nBOT_SECRET=bs\n")
    assert _only(read_env(path)).exchange is None
    _write(path, path.read_text() + "FREQTRADE__EXCHANGE__NAME=kraken\n")
    assert _only(read_env(path)).exchange == "kraken-spot"
    custom = _only(read_env(path, key_var="BOT_KEY", secret_var="BOT_SECRET"))
    assert (custom.api_key, custom.api_secret.reveal(), custom.exchange) == ("bk", "bs", None)
    assert custom.source == f"{path}:3"
    with pytest.raises(InvalidInputError, match="both"):
        read_env(path, key_var="BOT_KEY")
    with pytest.raises(InvalidInputError, match="no variable NOPE_KEY"):
        read_env(path, key_var="NOPE_KEY", secret_var="BOT_SECRET")


def test_env_empty_template_gives_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / ".env", "KRAKEN_API_KEY=\nKRAKEN_API_SECRET=\nOTHER=1\n")
    assert read_env(path) == []


SECRET = "s3cr3t-VALUE-never-shown-0123456789"


@pytest.mark.parametrize(("text", "message"), [
    ("KRAKEN_API_KEY=k\n", r":1: KRAKEN_API_KEY is set but KRAKEN_API_SECRET is missing"),
    (f"\nKRAKEN_API_SECRET={SECRET}\n", r":2: KRAKEN_API_SECRET is set but KRAKEN_API_KEY"),
    (f"KRAKEN_API_KEY=k\nKRAKEN_API_SECRET=\"{SECRET}\n", r":2: unterminated double-quoted"),
    (f"KRAKEN_API_KEY=k\nKRAKEN_API_SECRET='{SECRET}\n", r":2: unterminated single-quoted"),
    (f"KRAKEN_API_KEY=k\nKRAKEN_API_SECRET=\"{SECRET}\" junk\n", r":2: unexpected text"),
    (f"KRAKEN_API_KEY=k\n=KRAKEN_API_SECRET{SECRET}\n", r":2: expected NAME=value"),
    (f"KRAKEN_API_KEY=k\nKRAKEN_API_SECRET {SECRET}\n", r":2: unexpected text"),
])
def test_env_errors_name_the_line_not_the_secret(tmp_path: Path, text: str, message: str
                                                 ) -> None:
    path = _write(tmp_path / ".env", text)
    with pytest.raises(InvalidInputError, match=message) as info:
        read_env(path)
    shown = str(info.value) + (info.value.hint or "")
    assert SECRET not in shown and SECRET[:8] not in shown
    assert str(path) in shown


def test_env_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"A=1\nKRAKEN_API_SECRET=\xff\xfe\n")
    with pytest.raises(InvalidInputError, match=r":2: not valid UTF-8"):
        read_env(path)


# -- files in general ----------------------------------------------------------------------


@pytest.mark.parametrize("reader", [read_env, read_ccxt, read_freqtrade])
def test_large_missing_and_odd_files_refused(tmp_path: Path, reader: object) -> None:
    assert callable(reader)
    big = tmp_path / "big"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(InvalidInputError, match="larger than 1 MiB"):
        reader(big)
    with pytest.raises(InvalidInputError, match="no such file"):
        reader(tmp_path / "missing")
    with pytest.raises(InvalidInputError, match="not a regular file"):
        reader(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        reader(fifo)


def test_candidate_repr_hides_the_secret(tmp_path: Path) -> None:
    path = _write(tmp_path / ".env", f"KRAKEN_API_KEY=k\nKRAKEN_API_SECRET={SECRET}\n")
    found = _only(read_env(path))
    assert SECRET not in repr(found) and SECRET not in str(found)


# -- ccxt ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_ccxt_round_trip(tmp_path: Path, ensure_ascii: bool, newline: str) -> None:
    doc = {"kraken": {"apiKey": "spotkey", "secret": HOSTILE[-1] + '"\\/'},
           "krakenfutures": {"apiKey": "fkey", "secret": "".join(HOSTILE[:-1])},
           "binance": {"apiKey": "bkey", "secret": "\u0000\u001f\ud7ff"},
           "Weird Name": {"apiKey": "wkey", "secret": "w"},
           "options": {"verbose": True}, "list": [1, 2.5e-3, None, [], {}]}
    text = json.dumps(doc, indent=2, ensure_ascii=ensure_ascii)
    path = _write(tmp_path / "keys.json", text, newline=newline, bom=True)
    found = read_ccxt(path)
    assert [(c.name, c.exchange, c.api_key) for c in found] == [
        ("kraken", "kraken-spot", "spotkey"), ("krakenfutures", "kraken-futures", "fkey"),
        ("binance", "generic", "bkey"), (None, "generic", "wkey")]
    for c, profile in zip(found, ("kraken", "krakenfutures", "binance", "Weird Name"),
                          strict=True):
        assert c.api_secret.reveal() == doc[profile]["secret"]  # type: ignore[index]
    assert found[0].source == f"{path}:3"


def test_ccxt_single_profile(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.json", '{"apiKey": "k", "secret": "s", "password": "p"}')
    found = _only(read_ccxt(path))
    assert (found.exchange, found.name, found.api_secret.reveal()) == (None, None, "s")
    assert found.notes == ("the profile also has password; botvault keeps only the key and "
                           "secret",)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=60), st.booleans())
def test_ccxt_any_string_round_trips(tmp_path: Path, value: str, ensure_ascii: bool) -> None:
    path = tmp_path / "any.json"
    text = json.dumps({"apiKey": "k", "secret": value}, ensure_ascii=True)
    if not ensure_ascii:
        try:
            text = json.dumps({"apiKey": "k", "secret": value}, ensure_ascii=False)
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps({"apiKey": "k", "secret": value}, ensure_ascii=True)
    path.write_text(text, encoding="utf-8")
    assert _only(read_ccxt(path)).api_secret.reveal() == json.loads(text)["secret"] == value


def test_ccxt_duplicate_keys_last_wins(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.json", '{"apiKey": "k", "secret": "a", "secret": "b"}')
    assert _only(read_ccxt(path)).api_secret.reveal() == "b"


@pytest.mark.parametrize(("text", "message"), [
    ('{"apiKey": "k"}', r":1: \"apiKey\" is set but \"secret\" is missing"),
    ('{\n"kraken": {\n"secret": "SECRETVALUE"}}', r":3: \"secret\" is set but \"apiKey\""),
    ('{"apiKey": 5, "secret": "SECRETVALUE"}', r":1: \"apiKey\" is not a string"),
    ('{"apiKey": "k",\n "secret": "SECRETVALUE\n"}', r":2: invalid string"),
    ('{"apiKey": "k", "secret": "SECRETVALUE" // note\n}', r":1: expected ',' or '}'"),
    ('{"apiKey": "k", "secret": "SECRETVALUE",}', r":1: expected a quoted key"),
    ('{"apiKey": "k", "secret": NaN}', r":1: expected a JSON value"),
    ('["k", "SECRETVALUE"]', r"expected a JSON object"),
    ('{"apiKey": "k", "secret": "SECRETVALUE"} x', r"unexpected text after"),
    ('{"apiKey": "k", "secret": "SECRETVALUE', r"unterminated string"),
    ("[" * 100_000, r"nested deeper than 64"),
    ("", r"unexpected end of file"),
])
def test_ccxt_errors(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path / "k.json", text)
    with pytest.raises(InvalidInputError, match=message) as info:
        read_ccxt(path)
    assert "SECRETVALUE" not in str(info.value)


# -- freqtrade -----------------------------------------------------------------------------

FREQTRADE = """{
    // freqtrade allows comments
    "bot_name": "ft-main",
    "stake_currency": "USD", /* and block
    comments */
    "exchange": {
        "name": "%s",
        "key": "the-key",
        "secret": %s,
        "ccxt_config": {"urls": {"api": "https://example.invalid//x/*y*/"}},
        "pair_whitelist": ["BTC/USD", "ETH/USD",],
    },
}
"""


@pytest.mark.parametrize(("exchange", "profile"), [("kraken", "kraken-spot"),
                                                   ("krakenfutures", "kraken-futures"),
                                                   ("binance", "generic")])
def test_freqtrade(tmp_path: Path, exchange: str, profile: str) -> None:
    secret = "sec//ret/*not a comment*/\"\\ü"
    path = _write(tmp_path / "config.json", FREQTRADE % (exchange, json.dumps(secret)),
                  newline="\r\n")
    found = _only(read_freqtrade(path))
    assert (found.name, found.exchange, found.api_key) == ("ft-main", profile, "the-key")
    assert found.api_secret.reveal() == secret
    assert found.source == f"{path}:8"


@pytest.mark.parametrize("secret", HOSTILE)
def test_freqtrade_round_trip(tmp_path: Path, secret: str) -> None:
    doc = {"exchange": {"name": "kraken", "key": "k", "secret": secret}, "bot_name": "Bad Name"}
    path = _write(tmp_path / "config.json", json.dumps(doc, ensure_ascii=False))
    found = _only(read_freqtrade(path))
    assert (found.api_secret.reveal(), found.name) == (secret, None)


def test_freqtrade_key_from_environment(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.json", '{"exchange": {"name": "kraken", "key": "", '
                                            '"secret": ""}}')
    assert read_freqtrade(path) == []


@pytest.mark.parametrize(("text", "message"), [
    ('{"dry_run": true}', r"no \"exchange\" object"),
    ('{"exchange": {"key": "k"}}', r"\"secret\" is missing"),
    ('{"exchange": {"key": "k", "secret": "s"} /* open', r"unterminated /\* comment"),
])
def test_freqtrade_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        read_freqtrade(_write(tmp_path / "config.json", text))

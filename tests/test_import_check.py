"""Plaintext files into entries (`botvault import`'s rules, in the library): every key checked
as `add` checks it, every problem reported at once, what was repaired warned with its place."""

from __future__ import annotations

import base64
import os
import warnings
from pathlib import Path

import pytest

from botvault.errors import InvalidInputError
from botvault.import_check import entries_from, read_plaintext, with_scopes
from botvault.importers import Candidate
from botvault.secret import Secret


def _cand(name: str | None, exchange: str | None, secret: str, line: int) -> Candidate:
    return Candidate(name=name, exchange=exchange, api_key="PUBKEY1", api_secret=Secret(secret),
                     source=f"keys.env:{line}")


def test_names_follow_the_given_one_and_repairs_are_warned_with_their_place() -> None:
    secret = base64.b64encode(os.urandom(64)).decode()
    wrapped = secret[:40] + "\n" + secret[40:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries = entries_from([_cand(None, "kraken-spot", wrapped, 1),
                                _cand(None, None, secret, 2)], name="bot",
                               exchange="kraken-spot", source=Path("keys.env"))
    assert [e.name for e in entries] == ["bot", "bot-2"]
    assert [e.note for e in entries] == ["imported from keys.env:1", "imported from keys.env:2"]
    assert entries[0].api_secret.reveal() == secret
    assert {e.imported_from for e in entries} == {os.path.abspath("keys.env")}
    scoped = with_scopes(entries, "read-only", "none")
    assert [(e.general.value, e.withdrawal.value) for e in scoped] == [("read-only", "none")] * 2
    assert [e.api_secret.reveal() for e in scoped] == [e.api_secret.reveal() for e in entries]
    assert [str(w.message).split(":")[:2] for w in caught] == [["keys.env", "1"]]
    assert "whitespace" in str(caught[0].message)


def test_every_problem_is_reported_and_nothing_is_taken() -> None:
    found = [_cand(None, "kraken-spot", "c2hvcnQ=", 1), _cand("ok", None, "s", 2),
             _cand(None, "generic", "s", 3)]
    with pytest.raises(InvalidInputError) as caught:
        entries_from(found, name=None, exchange=None, source=Path("keys.env"))
    message = caught.value.message
    assert message.startswith("3 problems in the file; nothing was imported:")
    for line in ("keys.env:1: no name", "keys.env:2: the file does not say which exchange",
                 "keys.env:3: no name"):
        assert line in message


def test_a_file_without_a_pair_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("# nothing here\n")
    with pytest.raises(InvalidInputError, match="no key pair found"):
        read_plaintext(empty, "env")
    with pytest.raises(InvalidInputError, match="unknown plaintext format"):
        read_plaintext(empty, "yaml")

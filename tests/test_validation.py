"""Kraken key validation, replayed from tests/data/kraken_secrets.json."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from botvault import InvalidInputError
from botvault.exchanges.validation import clean_secret, validate_api_key

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "kraken_secrets.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["description"] for c in CASES])
def test_secret_vectors(case: dict[str, Any]) -> None:
    if case["outcome"] == "refused":
        with pytest.raises(InvalidInputError) as info:
            clean_secret(case["exchange"], case["secret"])
        assert case["message_contains"] in str(info.value)
        assert case["secret"].replace(" ", "")[:12] not in str(info.value)
    else:
        stored, removed = clean_secret(case["exchange"], case["secret"])
        assert removed == case["removed"]
        assert stored == case.get("stored", case["secret"])


def test_documented_example_secret_is_94_characters_without_the_space() -> None:
    example = CASES[0]["secret"].replace(" ", "")
    assert len(example) == 94


@pytest.mark.parametrize("key", ["", "   ", "has space", "new\nline", "semi;colon"])
def test_bad_kraken_api_keys(key: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_api_key("kraken-spot", key)


def test_unknown_exchange() -> None:
    with pytest.raises(InvalidInputError, match="unknown exchange"):
        clean_secret("binance", "x")


def test_surrounding_whitespace_of_an_api_key_is_removed_and_said() -> None:
    from botvault.errors import VaultWarning

    with pytest.warns(VaultWarning, match="removed 2 whitespace characters"):
        assert validate_api_key("kraken-spot", " PUBKEY\t") == "PUBKEY"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert validate_api_key("kraken-spot", "PUBKEY") == "PUBKEY"  # nothing to say

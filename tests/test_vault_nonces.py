"""API nonces through the Vault: per key, following renames, surviving removal."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from botvault import InvalidInputError, Vault
from tests.conftest import PASSPHRASE, kraken_secret


def _add(v: Vault, name: str, key: str = "SAMEKEY", unit: str = "ms") -> None:
    v.add(name, exchange="kraken-spot", api_key=key, api_secret=kraken_secret(),
          general="full", withdrawal="none", nonce_unit=unit)


def test_increasing_and_shared_between_vault_objects(vault: Vault, vault_path: Path) -> None:
    _add(vault, "a")
    other = Vault.open(vault_path, PASSPHRASE)
    values = [vault.next_nonce("a"), other.next_nonce("a"), vault.next_nonce("a")]
    assert values == sorted(values)
    assert len(set(values)) == 3
    block = vault.allocate_nonces("a", 100)
    assert len(block) == 100
    assert block[0] > values[-1]


def test_counter_follows_rename_and_outlives_removal(vault: Vault) -> None:
    _add(vault, "a")
    first = vault.allocate_nonces("a", 1000)[-1]
    vault.rename("a", "b")
    assert vault.next_nonce("b") > first
    last = vault.next_nonce("b")
    vault.remove("b")
    _add(vault, "c")  # the same api key again: the exchange remembers its nonces
    assert vault.next_nonce("c") > last
    _add(vault, "d", key="OTHERKEY")
    assert vault.peek_nonce("d")[0] is None


def test_unit_change_rules(vault: Vault) -> None:
    _add(vault, "a", unit="10ns")
    vault.next_nonce("a")
    with pytest.raises(InvalidInputError, match="cannot change the nonce unit"):
        vault.edit("a", nonce_unit="ms")
    assert vault.get("a").nonce_unit == "10ns"
    _add(vault, "b", key="K2", unit="ms")
    vault.next_nonce("b")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vault.edit("b", nonce_unit="us")
    assert any("will be rejected" in str(w.message) for w in caught)
    assert vault.get("b").nonce_unit == "us"


def test_peek_does_not_allocate(vault: Vault) -> None:
    _add(vault, "a")
    n = vault.next_nonce("a")
    assert vault.peek_nonce("a")[0] == n
    assert vault.peek_nonce("a")[0] == n
    assert vault.next_nonce("a") > n

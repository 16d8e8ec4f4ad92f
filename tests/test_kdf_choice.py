"""`botvault.kdf_choice`: a new vault's Argon2id cost, checked before anything is asked or
run. (`upgraded_kdf` is exercised by the `passwd --upgrade-kdf` tests in test_passwd.)"""

from __future__ import annotations

import warnings

import pytest

import botvault.crypto
from botvault import VaultWarning
from botvault.crypto import FLOOR, RECOMMENDED_MEMORY_KIB, KdfParams
from botvault.errors import InvalidInputError
from botvault.kdf_choice import NewVaultKdf, new_vault_kdf


@pytest.mark.parametrize(("memory_mib", "iterations", "lanes"),
                         [(1, None, 1), (256, 1, 1), (256, None, 0), (256, None, 10_000)])
def test_impossible_parameters_are_refused_before_any_kdf_runs(
        monkeypatch: pytest.MonkeyPatch, memory_mib: int, iterations: int | None,
        lanes: int) -> None:
    def must_not_run(*_: object, **__: object) -> None:
        raise AssertionError("the KDF ran for refused parameters")

    monkeypatch.setattr(botvault.crypto, "derive_kek", must_not_run)
    monkeypatch.setattr(botvault.crypto, "calibrate", must_not_run)
    with pytest.raises(InvalidInputError):
        new_vault_kdf(memory_mib, iterations, lanes)


def test_defaults_are_256_mib_and_calibrated() -> None:
    chosen = new_vault_kdf()
    assert chosen.memory_kib == RECOMMENDED_MEMORY_KIB
    assert chosen.iterations is None
    assert 1 <= chosen.parallelism <= 4


def test_given_passes_are_used_as_given_and_low_memory_warns() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params = NewVaultKdf(FLOOR.memory_kib, 3, 1).choose(1.0)
    assert params == KdfParams(FLOOR.memory_kib, 3, 1)
    assert [type(w.message) for w in caught] == [VaultWarning]
    assert "below the recommended 256 MiB" in str(caught[0].message)

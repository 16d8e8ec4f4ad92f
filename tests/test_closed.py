"""A closed `Vault` or `NonceStore` refuses with a botvault error of its own (ClosedError),
not a conflict and not a bare ValueError."""

from __future__ import annotations

from pathlib import Path

import pytest

from botvault import ClosedError, ConflictError, Vault, VaultError
from botvault.nonces import NonceStore
from tests.conftest import PASSPHRASE, kraken_secret


def _add(vault: Vault, name: str) -> None:
    vault.add(name, exchange="kraken-futures", api_key=f"K-{name}",
              api_secret=kraken_secret(), general="full", withdrawal="none")


def test_closed_error_is_a_botvault_error_with_the_bug_code() -> None:
    assert issubclass(ClosedError, VaultError)
    assert not issubclass(ClosedError, ConflictError)
    assert ClosedError.exit_code == 1
    # As Python's own closed files do: code written against ValueError keeps working.
    assert issubclass(ClosedError, ValueError)


@pytest.mark.parametrize("use", [
    lambda v: _add(v, "b"),
    lambda v: v.backups(),
    lambda v: v.restore(1),
    lambda v: v.change_passphrase("another passphrase"),
    lambda v: v.get("a"),
    lambda v: v.list(),
    lambda v: v.next_nonce("a"),
    lambda v: "a" in v,
])
def test_closed_vault_raises_closed_error(vault: Vault, vault_path: Path,
                                          use: object) -> None:
    _add(vault, "a")
    vault.close()
    before = vault_path.read_bytes()
    with pytest.raises(ClosedError, match="the vault is closed") as raised:
        use(vault)  # type: ignore[operator]
    assert not isinstance(raised.value, ConflictError)
    assert raised.value.exit_code == 1
    assert vault_path.read_bytes() == before
    assert "closed" in repr(vault)


def test_closed_vault_opened_again_works(vault: Vault, vault_path: Path) -> None:
    vault.close()
    with pytest.raises(ClosedError):
        _add(vault, "a")
    with Vault.open(vault_path, PASSPHRASE) as again:
        _add(again, "a")
        assert len(again) == 1


def test_closed_nonce_store_raises_closed_error(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / "vault.bv.nonces")
    assert store.next("k", "ms") > 0
    store.close()
    with pytest.raises(ClosedError, match="this NonceStore is closed") as raised:
        store.next("k", "ms")
    assert raised.value.exit_code == 1

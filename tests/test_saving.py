"""The save engine (vault/save_engine.py) on its own, without `Vault`: real files, real locks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from botvault import codec, vault_file
from botvault.entries import Entry
from botvault.errors import ClosedError, RollbackError
from botvault.open_vault import Vault, new_entry
from botvault.save_engine import Records, SavedFile, read_checked
from tests.conftest import kraken_secret


def _entry(name: str) -> Entry:
    return new_entry(name, exchange="kraken-futures", api_key=f"K-{name}",
                     api_secret=kraken_secret(), general="full", withdrawal="none")


def _engine(path: Path, key: bytes) -> SavedFile:
    parsed, seen = read_checked(path)
    keys = codec.Keys.from_data_key(key)
    return SavedFile(path, keys, parsed, codec.decode(parsed, keys), seen=seen)


def _adding(entry: Entry) -> Callable[[Records], Records]:
    def op(records: Records) -> Records:
        records[entry.name] = entry
        return records
    return op


@pytest.fixture
def key(vault: Vault) -> bytes:
    return bytes(vault._data_key)


def test_apply_saves_the_next_generation_and_another_engine_adopts_it(
        vault_path: Path, key: bytes) -> None:
    one, two = _engine(vault_path, key), _engine(vault_path, key)
    one.apply(_adding(_entry("a")))
    assert read_checked(vault_path)[0].header.generation == one.header.generation == 1
    two.apply(_adding(_entry("b")))  # refreshes first: "a" is not lost
    assert sorted(_engine(vault_path, key).entries) == ["a", "b"]
    assert two.header.generation == 2 and two.floor == 2


def test_unchanged_records_are_kept_sealed_as_they_were(vault_path: Path, key: bytes) -> None:
    engine = _engine(vault_path, key)
    engine.apply(_adding(_entry("a")))
    sealed = engine.records["a"]
    engine.apply(_adding(_entry("b")))
    assert engine.records["a"] is sealed
    assert engine.records["b"].nonce != sealed.nonce


def test_a_save_keeps_the_replaced_file_as_a_backup(vault_path: Path, key: bytes) -> None:
    engine = _engine(vault_path, key)
    before = vault_path.read_bytes()
    engine.apply(_adding(_entry("a")))
    assert [g for g, _ in vault_file.list_backups(vault_path)] == [0]
    assert vault_file.backup_path(vault_path, 0).read_bytes() == before


def test_the_next_save_goes_above_the_floor(vault_path: Path, key: bytes) -> None:
    engine = _engine(vault_path, key)
    engine.floor = 41  # as when a rolled-back file is opened on purpose
    with vault_file.lock(vault_path):
        engine.write_locked(dict(engine.entries))
    assert engine.header.generation == 42
    assert read_checked(vault_path)[0].header.generation == 42


def test_refresh_refuses_a_file_that_went_back(vault_path: Path, key: bytes) -> None:
    engine = _engine(vault_path, key)
    old = vault_path.read_bytes()
    engine.apply(_adding(_entry("a")))
    vault_file.atomic_write(vault_path, old, verify=codec.equal_to(old), backup_as=None)
    with pytest.raises(RollbackError):
        engine.refresh()


def test_a_closed_engine_refuses_to_save(vault_path: Path, key: bytes) -> None:
    engine = _engine(vault_path, key)
    engine.close()
    before = vault_path.read_bytes()
    with pytest.raises(ClosedError):
        engine.apply(_adding(_entry("a")))
    assert vault_path.read_bytes() == before

"""Concurrent writers never lose each other's changes.

Several processes adding at once all land (library and CLI); two `Vault` objects loaded
from the same file see each other's saves, whatever the mix of add, edit, rename, remove,
restore and passphrase change; generations only go up.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from botvault.crypto import KdfParams
from botvault.errors import (
    AlreadyExistsError,
    AuthenticationError,
    KeyChangedError,
    NotFoundError,
)
from botvault.open_vault import Vault
from botvault.vault_file import list_backups
from tests.conftest import PASSPHRASE
from tests.helpers.vaultfiles import add_generic, full_snapshot, snapshot
from tests.helpers.writers import concurrent_adder

WORKERS = 4
PER_WORKER = 25
FLOOR = KdfParams(19 * 1024, 2, 1)


def _expected_names() -> set[str]:
    return {f"w{w}-{i:02d}" for w in range(WORKERS) for i in range(PER_WORKER)}


def _check_all_landed(path: Path, passphrase: str) -> None:
    with Vault.open(path, passphrase) as v:
        assert set(snapshot(v)) == _expected_names()
        assert v.generation == WORKERS * PER_WORKER  # one save each, none lost or doubled
        backups = v.backups()
    assert [b.generation for b in backups] == list(range(v.generation - 1, v.generation - 6, -1))


@pytest.mark.slow
def test_four_processes_adding_at_once_library(vault: Vault, vault_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WORKERS)
    procs = [ctx.Process(target=concurrent_adder,
                         args=(str(vault_path), PASSPHRASE, w, PER_WORKER, barrier))
             for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0] * WORKERS
    _check_all_landed(vault_path, PASSPHRASE)
    # The parent's Vault was loaded before all of it; its next save adopts all 100.
    add_generic(vault, "parent")
    assert set(snapshot(vault)) == _expected_names() | {"parent"}


def _cli_command() -> list[str]:
    script = Path(sys.executable).with_name("botvault")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from botvault.cli.main import main; main()"]


@pytest.mark.slow
def test_four_processes_adding_at_once_cli(vault_path: Path) -> None:
    """The real command, 4 at a time, on a vault with real (floor) KDF parameters."""
    Vault.create(vault_path, PASSPHRASE, kdf=FLOOR).close()
    command = _cli_command()
    passfile = vault_path.parent.parent / "passphrase"
    passfile.write_text(f"{PASSPHRASE}\n")
    passfile.chmod(0o600)
    # Standard input is the secret alone (--secret-stdin); the passphrase comes from a file.
    env = {**os.environ, "BOTVAULT_PATH": str(vault_path),
           "BOTVAULT_PASSPHRASE_FILE": str(passfile)}
    failures: list[str] = []
    start = threading.Barrier(WORKERS)

    def worker(w: int) -> None:
        start.wait()
        for i in range(PER_WORKER):
            done = subprocess.run(
                [*command, "add", f"w{w}-{i:02d}", "--exchange", "generic", "--api-key",
                 f"key-{w}-{i}", "--general", "read-only", "--withdrawal", "none",
                 "--secret-stdin"],
                input=f"secret-{w}-{i}\n", capture_output=True, text=True,
                env=env, timeout=60, check=False)
            if done.returncode != 0:
                failures.append(f"w{w}-{i:02d}: exit {done.returncode}: {done.stderr}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    _check_all_landed(vault_path, PASSPHRASE)


# --- two Vault objects on one file: A saves, then stale B saves -----------------------------


@pytest.fixture
def pair(vault: Vault, vault_path: Path) -> tuple[Vault, Vault]:
    """A (the fixture's vault) and B, both loaded from the same file with three entries."""
    for name in ("d", "e", "f"):
        add_generic(vault, name, note=f"{name}-0")
    return vault, Vault.open(vault_path, PASSPHRASE)


def _on_disk(path: Path, passphrase: str = PASSPHRASE) -> tuple[int, dict[str, str]]:
    with Vault.open(path, passphrase) as v:
        return v.generation, snapshot(v)


def test_stale_add_keeps_the_other_add(pair: tuple[Vault, Vault], vault_path: Path) -> None:
    a, b = pair
    start = a.generation
    add_generic(a, "x", note="by a")
    assert a.generation == start + 1
    add_generic(b, "y", note="by b")
    assert b.generation == start + 2
    expected = {"d": "d-0", "e": "e-0", "f": "f-0", "x": "by a", "y": "by b"}
    assert snapshot(b) == expected  # B's own view includes A's change
    assert _on_disk(vault_path) == (start + 2, expected)
    add_generic(a, "z")  # and now A is the stale one
    assert set(snapshot(a)) == {*expected, "z"}
    assert a.generation == start + 3


def test_stale_edit_of_another_field_keeps_both_edits(pair: tuple[Vault, Vault],
                                                      vault_path: Path) -> None:
    a, b = pair
    a.edit("e", note="note by a")
    b.edit("e", general="full")
    entry = b.get("e")
    assert (entry.note, entry.general.value) == ("note by a", "full")
    with Vault.open(vault_path, PASSPHRASE) as fresh:
        got = fresh.get("e")
        assert (got.note, got.general.value) == ("note by a", "full")


def test_stale_add_after_a_rename(pair: tuple[Vault, Vault], vault_path: Path) -> None:
    a, b = pair
    secret_before = full_snapshot(a)["e"]
    a.rename("e", "e2")
    add_generic(b, "y")
    generation, state = _on_disk(vault_path)
    assert set(state) == {"d", "e2", "f", "y"}
    assert "e" not in b
    assert full_snapshot(b)["e2"] == secret_before  # the renamed entry kept its secret
    assert generation == b.generation


def test_stale_edit_after_a_remove_does_not_resurrect(pair: tuple[Vault, Vault],
                                                      vault_path: Path) -> None:
    a, b = pair
    a.remove("e")
    b.edit("d", note="by b")
    assert _on_disk(vault_path)[1] == {"d": "by b", "f": "f-0"}
    assert snapshot(b) == {"d": "by b", "f": "f-0"}


def test_stale_edit_of_a_removed_entry_is_not_found(pair: tuple[Vault, Vault],
                                                    vault_path: Path) -> None:
    a, b = pair
    a.remove("e")
    before = vault_path.read_bytes()
    with pytest.raises(NotFoundError):
        b.edit("e", note="by b")
    assert vault_path.read_bytes() == before
    assert "e" not in b
    with pytest.raises(NotFoundError):
        b.remove("e")
    with pytest.raises(NotFoundError):
        b.rename("e", "e3")
    assert vault_path.read_bytes() == before


def test_stale_rename_carries_the_other_edit(pair: tuple[Vault, Vault],
                                             vault_path: Path) -> None:
    a, b = pair
    a.edit("e", note="by a")
    b.rename("e", "e2")
    assert _on_disk(vault_path)[1] == {"d": "d-0", "e2": "by a", "f": "f-0"}


def test_stale_rename_to_a_name_taken_meanwhile(pair: tuple[Vault, Vault],
                                                vault_path: Path) -> None:
    a, b = pair
    add_generic(a, "x", api_key="a-key")
    with pytest.raises(AlreadyExistsError):
        b.rename("d", "x")
    with pytest.raises(AlreadyExistsError):
        add_generic(b, "x", api_key="b-key")
    with Vault.open(vault_path, PASSPHRASE) as fresh:
        assert fresh.get("x").api_key == "a-key"
        assert set(snapshot(fresh)) == {"d", "e", "f", "x"}


def test_concurrent_removes(pair: tuple[Vault, Vault], vault_path: Path) -> None:
    a, b = pair
    a.remove("d")
    b.remove("e")
    assert set(_on_disk(vault_path)[1]) == {"f"}
    with pytest.raises(NotFoundError):
        a.remove("e")
    assert set(snapshot(a)) == {"f"}


def test_stale_save_after_a_passphrase_change_keeps_the_new_passphrase(
        pair: tuple[Vault, Vault], vault_path: Path) -> None:
    a, b = pair
    a.change_passphrase("a whole new passphrase")
    before = vault_path.read_bytes()
    # b holds the old data key, which the file no longer uses: it cannot save, and says so.
    with pytest.raises(KeyChangedError):
        add_generic(b, "y")
    assert vault_path.read_bytes() == before
    with pytest.raises(AuthenticationError):
        Vault.open(vault_path, PASSPHRASE)
    assert set(_on_disk(vault_path, "a whole new passphrase")[1]) == {"d", "e", "f"}


def test_stale_save_after_a_restore(pair: tuple[Vault, Vault], vault_path: Path) -> None:
    a, b = pair
    first = a.generation
    a.remove("d")
    a.restore(first)  # d is back
    add_generic(b, "y")
    assert set(_on_disk(vault_path)[1]) == {"d", "e", "f", "y"}


def test_generations_strictly_increase_across_writers(pair: tuple[Vault, Vault],
                                                      vault_path: Path) -> None:
    a, b = pair
    seen = [_on_disk(vault_path)[0]]
    for i in range(6):
        writer = (a, b)[i % 2]
        add_generic(writer, f"g{i}")
        seen.append(writer.generation)
        assert _on_disk(vault_path)[0] == writer.generation
    assert seen == sorted(set(seen))
    assert seen == list(range(seen[0], seen[0] + 7))
    assert [g for g, _ in list_backups(vault_path)] == list(range(seen[-1] - 1, seen[-1] - 6, -1))

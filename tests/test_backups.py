"""Automatic backups: the last five generations, each decryptable, restorable, re-keyed.

Every save keeps the file it replaces as `PATH.backups/gen-NNNNNNNNNNNN.bv`; only the last
five are kept. `restore` brings one back as a new generation. After a passphrase change the
old passphrase opens nothing: neither the vault nor any backup.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botvault import fileformat
from botvault.cli.main import app
from botvault.errors import AuthenticationError, FormatError, NotFoundError
from botvault.open_vault import Vault
from botvault.vault_file import backup_dir
from tests.conftest import PASSPHRASE
from tests.helpers.vaultfiles import add_generic, full_snapshot, mode_of, snapshot, temp_files
from tests.helpers.writers import die_before_rename

KEEP = 5
NEW_PASSPHRASE = "an entirely different passphrase"
State = dict[str, tuple[str, str, str, str, str]]


def _save_many(v: Vault, saves: int) -> dict[int, State]:
    """Make `saves` saves (adds, edits, a rename, a remove); the state after each, by
    generation."""
    history = {v.generation: full_snapshot(v)}
    for i in range(saves):
        if i % 4 == 3 and len(v) > 1:
            v.remove(sorted(snapshot(v))[0])
        elif i % 4 == 2:
            v.edit(sorted(snapshot(v))[-1], note=f"edit {i}")
        elif i % 7 == 5:
            name = sorted(snapshot(v))[0]
            v.rename(name, f"renamed{i}")
        else:
            add_generic(v, f"e{i:02d}", note=f"add {i}")
        history[v.generation] = full_snapshot(v)
    return history


def _backup_files(path: Path) -> dict[int, Path]:
    found = {}
    for child in backup_dir(path).iterdir():
        m = re.fullmatch(r"gen-(\d{12})\.bv", child.name)
        assert m, f"unexpected file in the backups dir: {child.name}"
        found[int(m.group(1))] = child
    return found


@pytest.mark.parametrize("saves", [1, 4, 5, 6, 12])
def test_backups_hold_exactly_the_last_five_generations(vault: Vault, vault_path: Path,
                                                        saves: int) -> None:
    history = _save_many(vault, saves)
    current = vault.generation
    assert current == saves
    expected = list(range(current - 1, max(current - 1 - KEEP, -1), -1))
    files = _backup_files(vault_path)
    assert sorted(files, reverse=True) == expected
    backups = vault.backups()
    assert [b.generation for b in backups] == expected  # newest first
    for backup in backups:
        assert backup.path == files[backup.generation]
        assert mode_of(backup.path) == 0o600
        with Vault.open(backup.path, PASSPHRASE) as old:  # each decrypts on its own
            assert old.generation == backup.generation
            assert full_snapshot(old) == history[backup.generation]
            assert backup.entries == len(history[backup.generation])


def test_backups_of_a_new_vault(vault: Vault) -> None:
    assert vault.backups() == []


def test_restore_brings_a_generation_back_as_a_new_one(vault: Vault, vault_path: Path) -> None:
    history = _save_many(vault, 8)
    current = vault.generation
    target = current - 3
    vault.restore(target)
    assert vault.generation == current + 1
    assert full_snapshot(vault) == history[target]
    with Vault.open(vault_path, PASSPHRASE) as fresh:
        assert fresh.generation == current + 1
        assert full_snapshot(fresh) == history[target]
        gens = [b.generation for b in fresh.backups()]
    assert gens == list(range(current, current - KEEP, -1))  # what was current is kept
    # Restoring is itself undoable: the state before the restore is a backup now.
    vault.restore(current)
    assert full_snapshot(vault) == history[current]
    add_generic(vault, "after-restore")
    assert "after-restore" in snapshot(vault)


def test_restore_of_a_missing_generation_changes_nothing(vault: Vault,
                                                         vault_path: Path) -> None:
    _save_many(vault, 8)
    before = vault_path.read_bytes()
    for generation in (0, 1, vault.generation, vault.generation + 1):
        with pytest.raises(NotFoundError):
            vault.restore(generation)
    assert vault_path.read_bytes() == before


def test_tampered_backup_is_not_restored(vault: Vault, vault_path: Path) -> None:
    _save_many(vault, 3)
    before = vault_path.read_bytes()
    victim = _backup_files(vault_path)[1]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    os.unlink(victim)  # a backup is a hard link to an old vault file: replace, don't edit
    fd = os.open(victim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, bytes(data))
    os.close(fd)
    with pytest.raises((AuthenticationError, FormatError)):
        vault.restore(1)
    with pytest.raises((AuthenticationError, FormatError)):
        vault.backups()
    assert vault_path.read_bytes() == before


def _cli(*args: str, stdin: str = PASSPHRASE + "\n") -> tuple[int, str, str]:
    """The passphrase line(s) on stdin, read because --passphrase-stdin says so."""
    result = CliRunner().invoke(app, ["--passphrase-stdin", *args], input=stdin)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def test_cli_restore_list_and_restore(vault: Vault, vault_path: Path) -> None:
    history = _save_many(vault, 7)
    current = vault.generation
    code, stdout, stderr = _cli("restore", "--list")
    assert (code, stderr) == (0, "")
    assert f"current generation: {current}" in stdout
    listed = [int(line.split()[0]) for line in stdout.splitlines() if line[:1].isdigit()]
    assert listed == list(range(current - 1, current - 1 - KEEP, -1))
    rows = {int(line.split()[0]): int(line.split()[1])
            for line in stdout.splitlines() if line[:1].isdigit()}
    assert rows == {g: len(history[g]) for g in listed}

    target = current - 2
    code, stdout, stderr = _cli("restore", str(target), "--yes")
    assert (code, stderr) == (0, "")
    assert str(target) in stdout
    with Vault.open(vault_path, PASSPHRASE) as fresh:
        assert fresh.generation == current + 1
        assert full_snapshot(fresh) == history[target]


def test_cli_restore_of_a_missing_generation_exits_4(vault: Vault, vault_path: Path) -> None:
    _save_many(vault, 2)
    before = vault_path.read_bytes()
    code, stdout, stderr = _cli("restore", "999")
    assert code == 4
    assert stdout == ""
    assert stderr.startswith("botvault: error: ")
    assert vault_path.read_bytes() == before


# --- passphrase changes ---------------------------------------------------------------------


def _vault_files(path: Path) -> list[Path]:
    """Every file beside the vault that parses as a vault (vault, backups, leftovers)."""
    found = []
    for candidate in [*path.parent.iterdir(), *backup_dir(path).iterdir()]:
        if candidate.is_file() and not candidate.is_symlink():
            try:
                fileformat.parse(candidate.read_bytes())
            except FormatError:
                continue
            found.append(candidate)
    return found


def test_change_passphrase_rekeys_the_vault_and_every_backup(vault: Vault,
                                                             vault_path: Path) -> None:
    history = _save_many(vault, 7)
    vault.change_passphrase(NEW_PASSPHRASE)
    files = _vault_files(vault_path)
    backups = [p for p in files if p.parent == backup_dir(vault_path)]
    assert len(backups) == KEEP
    assert vault_path in files
    for path in files:
        with pytest.raises(AuthenticationError):
            Vault.open(path, PASSPHRASE)
        with Vault.open(path, NEW_PASSPHRASE) as opened:
            if path == vault_path:
                assert full_snapshot(opened) == history[vault.generation - 1]
            else:
                assert full_snapshot(opened) == history[opened.generation]
    assert all(mode_of(p) == 0o600 for p in files)
    # The vault goes on working under the new passphrase, restore included.
    vault.restore(vault.generation - 3)
    with Vault.open(vault_path, NEW_PASSPHRASE) as fresh:
        assert full_snapshot(fresh) == history[vault.generation - 4]
    assert temp_files(vault_path) == []


def test_cli_passwd_rekeys_everything(vault: Vault, vault_path: Path) -> None:
    _save_many(vault, 6)
    code, stdout, stderr = _cli("passwd", stdin=f"{PASSPHRASE}\n{NEW_PASSPHRASE}\n")
    assert (code, stderr) == (0, "")
    assert "passphrase changed" in stdout
    for path in _vault_files(vault_path):
        with pytest.raises(AuthenticationError):
            Vault.open(path, PASSPHRASE)
        Vault.open(path, NEW_PASSPHRASE).close()
    code, _, stderr = _cli("restore", "--list")
    assert code == 3
    code, _, _ = _cli("restore", "--list", stdin=NEW_PASSPHRASE + "\n")
    assert code == 0


@pytest.mark.slow
def test_old_passphrase_opens_nothing_even_after_a_crashed_save(vault: Vault,
                                                                vault_path: Path) -> None:
    _save_many(vault, 3)
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=die_before_rename, args=(str(vault_path), PASSPHRASE))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    assert len(temp_files(vault_path)) == 1  # the crash left its complete temp file
    vault.change_passphrase(NEW_PASSPHRASE)
    opened_with_old = []
    for path in _vault_files(vault_path):
        try:
            Vault.open(path, PASSPHRASE).close()
        except AuthenticationError:
            continue
        opened_with_old.append(path.name)
    assert opened_with_old == []

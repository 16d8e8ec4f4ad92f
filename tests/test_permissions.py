"""Files and directories are private, and anything else is refused, never followed.

As OpenSSH treats a private key: a vault readable by others, owned by someone else or
reached through a symlink is refused with `InsecurePermissionsError` (exit 7), and the CLI
says which `chmod` fixes it.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botvault import vault_file
from botvault._testing import CHEAPEST_TEST_ONLY
from botvault.cli.main import app
from botvault.errors import InsecurePermissionsError, VaultError
from botvault.open_vault import Vault
from botvault.vault_file import backup_dir, lock_path
from tests.conftest import PASSPHRASE
from tests.helpers.vaultfiles import add_generic, mode_of, snapshot, temp_files

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


@pytest.fixture
def umask_000() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file a symlink will point at; it must never be written, created or read as a vault."""
    path = tmp_path / "elsewhere" / "victim"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"not yours to touch\n")
    os.chmod(path, 0o600)
    return path


def _fingerprint(path: Path) -> tuple[bytes, int, int]:
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, stat.S_IMODE(st.st_mode)


def _cli(*args: str, stdin: str = PASSPHRASE + "\n") -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


# --- what gets created ----------------------------------------------------------------------


def test_create_under_umask_000_is_private(tmp_path: Path, umask_000: None) -> None:
    path = tmp_path / "fresh" / "vault.bv"
    with Vault.create(path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY) as v:
        assert mode_of(path.parent) == 0o700
        assert mode_of(path) == 0o600
        assert mode_of(lock_path(path)) == 0o600
        add_generic(v, "alpha")
        add_generic(v, "beta")
    assert mode_of(backup_dir(path)) == 0o700
    backups = list(backup_dir(path).iterdir())
    assert len(backups) == 2
    assert all(mode_of(b) == 0o600 for b in backups)
    assert mode_of(path) == 0o600
    assert temp_files(path) == []


def test_create_in_an_existing_private_dir_leaves_its_mode(tmp_path: Path,
                                                            umask_000: None) -> None:
    directory = tmp_path / "mine"
    directory.mkdir(mode=0o700)
    os.chmod(directory, 0o700)
    Vault.create(directory / "vault.bv", PASSPHRASE, kdf=CHEAPEST_TEST_ONLY).close()
    assert mode_of(directory) == 0o700
    assert mode_of(directory / "vault.bv") == 0o600


def test_every_directory_create_makes_is_private(tmp_path: Path, umask_000: None) -> None:
    path = tmp_path / "a" / "b" / "vault.bv"
    Vault.create(path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY).close()
    assert mode_of(tmp_path / "a" / "b") == 0o700
    assert mode_of(tmp_path / "a") == 0o700


# --- modes and owners that are refused ------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o620, 0o602])
def test_vault_accessible_by_others_is_refused(vault: Vault, vault_path: Path,
                                               mode: int) -> None:
    os.chmod(vault_path, mode)
    with pytest.raises(InsecurePermissionsError) as caught:
        Vault.open(vault_path, PASSPHRASE)
    assert caught.value.exit_code == 7
    assert caught.value.hint is not None
    assert f"chmod 600 {vault_path}" in caught.value.hint
    assert mode_of(vault_path) == mode  # refused, not "fixed" behind the user's back


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_cli_prints_the_chmod_hint(vault: Vault, vault_path: Path, mode: int) -> None:
    os.chmod(vault_path, mode)
    code, stdout, stderr = _cli("list")
    assert code == 7
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("botvault: error: ")
    assert lines[1].startswith("hint: ")
    assert lines[1].endswith(f"chmod 600 {vault_path}")


@pytest.mark.parametrize("mode", [0o644, 0o604])
def test_save_refuses_a_vault_that_became_readable(vault: Vault, vault_path: Path,
                                                   mode: int) -> None:
    add_generic(vault, "alpha")
    os.chmod(vault_path, mode)
    before = vault_path.read_bytes()
    with pytest.raises(InsecurePermissionsError):
        add_generic(vault, "beta")
    assert vault_path.read_bytes() == before
    assert temp_files(vault_path) == []


@needs_root
def test_vault_owned_by_another_user_is_refused(vault: Vault, vault_path: Path) -> None:
    os.chown(vault_path, NOBODY, -1)
    with pytest.raises(InsecurePermissionsError) as caught:
        Vault.open(vault_path, PASSPHRASE)
    assert caught.value.exit_code == 7
    code, _, stderr = _cli("list")
    assert code == 7
    assert stderr.startswith("botvault: error: ")


@needs_root
def test_directory_owned_by_another_user_is_refused(vault: Vault, vault_path: Path) -> None:
    os.chown(vault_path.parent, NOBODY, -1)
    with pytest.raises(InsecurePermissionsError):
        Vault.open(vault_path, PASSPHRASE)


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o720, 0o702])
def test_directory_writable_by_others_is_refused(vault: Vault, vault_path: Path,
                                                 mode: int) -> None:
    os.chmod(vault_path.parent, mode)
    with pytest.raises(InsecurePermissionsError) as caught:
        Vault.open(vault_path, PASSPHRASE)
    assert caught.value.exit_code == 7
    other = vault_path.parent / "second.bv"
    with pytest.raises(InsecurePermissionsError):
        Vault.create(other, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY)
    assert not other.exists()


def test_save_refuses_a_directory_that_became_writable_by_others(
        vault: Vault, vault_path: Path) -> None:
    os.chmod(vault_path.parent, 0o777)  # noqa: S103 -- the insecure mode is the point
    before = vault_path.read_bytes()
    with pytest.raises(InsecurePermissionsError):
        add_generic(vault, "alpha")
    assert vault_path.read_bytes() == before


# --- symlinks -------------------------------------------------------------------------------


def test_symlinked_vault_is_refused_and_its_target_untouched(vault: Vault, vault_path: Path,
                                                             tmp_path: Path) -> None:
    add_generic(vault, "alpha")
    real = tmp_path / "real" / "vault.bv"
    real.parent.mkdir(mode=0o700)
    os.replace(vault_path, real)
    vault_path.symlink_to(real)
    before = _fingerprint(real)
    with pytest.raises(InsecurePermissionsError) as caught:
        Vault.open(vault_path, PASSPHRASE)
    assert caught.value.exit_code == 7
    with pytest.raises(InsecurePermissionsError):
        add_generic(vault, "beta")  # the already-open vault will not write through it
    code, _, _ = _cli("list")
    assert code == 7
    assert _fingerprint(real) == before
    assert vault_path.is_symlink()
    with Vault.open(real, PASSPHRASE) as direct:  # the target still is the vault it was
        assert snapshot(direct) == {"alpha": ""}


def test_create_at_a_dangling_symlink_creates_nothing(vault_path: Path, victim: Path) -> None:
    vault_path.parent.mkdir(mode=0o700)
    target = victim.with_name("would-be-created")
    vault_path.symlink_to(target)
    with pytest.raises(VaultError):
        Vault.create(vault_path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY)
    assert not target.exists()
    assert vault_path.is_symlink()


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_symlinked_lock_file_is_refused_and_its_target_untouched(
        vault: Vault, vault_path: Path, victim: Path, dangling: bool) -> None:
    add_generic(vault, "alpha")
    target = victim.with_name("not-there") if dangling else victim
    before_victim = _fingerprint(victim)
    before = vault_path.read_bytes()
    lock = lock_path(vault_path)
    lock.unlink()
    lock.symlink_to(target)
    with pytest.raises(InsecurePermissionsError) as caught:
        add_generic(vault, "beta")
    assert caught.value.exit_code == 7
    with pytest.raises(InsecurePermissionsError):
        vault.change_passphrase("another passphrase")
    assert vault_path.read_bytes() == before
    assert _fingerprint(victim) == before_victim
    assert not victim.with_name("not-there").exists()
    assert lock.is_symlink()
    assert temp_files(vault_path) == []


def test_create_with_a_planted_lock_symlink_is_refused(vault_path: Path, victim: Path) -> None:
    vault_path.parent.mkdir(mode=0o700)
    lock_path(vault_path).symlink_to(victim)
    before = _fingerprint(victim)
    with pytest.raises(InsecurePermissionsError):
        Vault.create(vault_path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY)
    assert not vault_path.exists()
    assert _fingerprint(victim) == before


@pytest.fixture
def predictable_temp(monkeypatch: pytest.MonkeyPatch, vault_path: Path) -> Path:
    """Make the save's temp name predictable and return it (an attacker's best case)."""
    monkeypatch.setattr(secrets, "token_hex", lambda *_: "deadbeef")
    return vault_path.with_name(f".{vault_path.name}.tmp-{os.getpid()}-deadbeef")


def test_planted_symlink_at_the_temp_path_is_not_followed(
        vault: Vault, vault_path: Path, victim: Path, predictable_temp: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    add_generic(vault, "alpha")
    before = vault_path.read_bytes()
    before_victim = _fingerprint(victim)
    predictable_temp.symlink_to(victim)
    monkeypatch.setattr(vault_file, "sweep_temp_files", lambda _path: None)
    with pytest.raises((VaultError, OSError)):
        add_generic(vault, "beta")
    assert _fingerprint(victim) == before_victim
    assert predictable_temp.is_symlink()
    assert os.readlink(predictable_temp) == str(victim)
    assert vault_path.read_bytes() == before


def test_planted_symlink_at_the_temp_path_is_swept_not_followed(
        vault: Vault, vault_path: Path, victim: Path, predictable_temp: Path) -> None:
    """Under the lock no other save runs, so a file at our temp prefix is abandoned and is
    removed (a symlink itself, never its target) before the save writes its own."""
    before_victim = _fingerprint(victim)
    predictable_temp.symlink_to(victim)
    add_generic(vault, "beta")
    assert _fingerprint(victim) == before_victim
    assert not os.path.lexists(predictable_temp)
    assert "beta" in Vault.open(vault_path, PASSPHRASE)


def test_planted_symlink_at_the_temp_path_is_an_insecure_permissions_error(
        vault: Vault, vault_path: Path, victim: Path, predictable_temp: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Planted after the sweep (a race): the exclusive create refuses it.
    monkeypatch.setattr(vault_file, "sweep_temp_files", lambda _path: None)
    predictable_temp.symlink_to(victim)
    with pytest.raises(InsecurePermissionsError):
        add_generic(vault, "beta")


# --- the passphrase file --------------------------------------------------------------------


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "passphrase"
    path.parent.mkdir(mode=0o700)
    path.write_text(PASSPHRASE + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o440])
def test_cli_refuses_a_passphrase_file_others_can_read(
        vault: Vault, passphrase_file: Path, mode: int) -> None:
    os.chmod(passphrase_file, mode)
    code, stdout, stderr = _cli("list", "--passphrase-file", str(passphrase_file), stdin="")
    assert code == 7
    assert stdout == ""
    assert stderr.splitlines()[0].startswith("botvault: error: ")
    assert f"chmod 600 {passphrase_file}" in stderr


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_cli_accepts_a_private_passphrase_file(vault: Vault, passphrase_file: Path,
                                               mode: int) -> None:
    add_generic(vault, "alpha")
    os.chmod(passphrase_file, mode)
    code, stdout, _ = _cli("list", "--passphrase-file", str(passphrase_file), stdin="")
    assert code == 0
    assert "alpha" in stdout

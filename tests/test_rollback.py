"""A rolled-back vault is noticed; no save is made from a stale copy."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botvault import seen_generations
from botvault._testing import cheap_kdf
from botvault.agent.ops import Agent
from botvault.cli.main import app
from botvault.doctor import check_backups
from botvault.errors import RollbackError
from botvault.open_vault import Vault
from tests.conftest import PASSPHRASE, kraken_secret
from tests.helpers.vaultfiles import add_generic, snapshot


def _save_many(v: Vault, n: int) -> None:
    for i in range(n):
        add_generic(v, f"e{i}", note=f"note {i}")


def _put_back(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)
    path.chmod(0o600)


def test_an_older_file_is_refused_naming_both_generations(vault: Vault,
                                                          vault_path: Path) -> None:
    _save_many(vault, 2)
    old, old_generation = vault_path.read_bytes(), vault.generation
    _save_many(vault, 0)
    add_generic(vault, "later")
    add_generic(vault, "later-still")
    _put_back(vault_path, old)
    with pytest.raises(RollbackError) as caught:
        Vault.open(vault_path, PASSPHRASE)
    assert caught.value.exit_code == 3
    message = caught.value.message
    assert f"generation {old_generation}, but generation {vault.generation}" in message
    assert caught.value.hint is not None
    assert f"botvault restore {old_generation}" in caught.value.hint
    with pytest.raises(RollbackError):
        Vault.open_with_key(vault_path, vault.hand_out_data_key())


def test_rolling_back_the_whole_directory_is_noticed(vault: Vault, vault_path: Path,
                                                     tmp_path: Path) -> None:
    _save_many(vault, 3)
    saved = tmp_path / "snapshot"
    shutil.copytree(vault_path.parent, saved)
    _save_many(vault, 0)
    add_generic(vault, "after-the-snapshot")
    shutil.rmtree(vault_path.parent)
    shutil.copytree(saved, vault_path.parent)  # lock, backups, everything beside it
    with pytest.raises(RollbackError):
        Vault.open(vault_path, PASSPHRASE)
    # The record is outside the vault's directory, so the copy did not bring it back.
    assert not str(seen_generations.record_path(vault_path, vault.vault_id)).startswith(
        str(vault_path.parent))


def test_cli_refuses_then_restore_keeps_the_older_file_on_purpose(vault: Vault,
                                                                  vault_path: Path) -> None:
    _save_many(vault, 2)
    old, old_generation = vault_path.read_bytes(), vault.generation
    add_generic(vault, "later")
    newest = vault.generation
    _put_back(vault_path, old)
    result = CliRunner().invoke(app, ["--passphrase-stdin", "list"], input=PASSPHRASE + "\n")
    assert result.exit_code == 3
    assert f"generation {old_generation}, but generation {newest}" in result.stderr
    assert "botvault restore" in result.stderr
    result = CliRunner().invoke(app, ["--passphrase-stdin", "restore", str(old_generation),
                                      "--yes"],
                                input=PASSPHRASE + "\n")
    assert result.exit_code == 0, result.stderr
    with Vault.open(vault_path, PASSPHRASE) as v:
        assert v.generation > newest
        assert "later" not in v
        assert set(snapshot(v)) == {"e0", "e1"}


def test_the_agent_never_switches_to_an_older_generation(vault: Vault,
                                                         vault_path: Path) -> None:
    _save_many(vault, 2)
    old, old_generation = vault_path.read_bytes(), vault.generation
    agent = Agent(Vault.open(vault_path, PASSPHRASE), ttl=60, idle=60, allow_withdrawal=False)
    add_generic(vault, "later")
    assert {e["name"] for e in agent.handle({"op": "list"})["entries"]} == {"e0", "e1", "later"}
    _put_back(vault_path, old)
    answer = agent.handle({"op": "list"})
    assert answer["ok"] is False
    assert f"generation {old_generation}, but generation {vault.generation}" in str(answer)
    assert "botvault restore" in str(answer)
    assert answer["error"]["type"] == "AuthenticationError"  # the client exits 3
    status = agent.handle({"op": "status"})
    assert status["generation"] == vault.generation
    assert "generation" in (status["vault_problem"] or "")


def test_doctor_reports_backups_newer_than_the_file(vault: Vault, vault_path: Path) -> None:
    _save_many(vault, 2)
    old, old_generation = vault_path.read_bytes(), vault.generation
    add_generic(vault, "later")
    add_generic(vault, "later-still")
    _put_back(vault_path, old)
    findings = check_backups(vault_path, None)
    (newer,) = [f for f in findings if "newer than the vault file" in f.title]
    assert newer.severity == "fail"
    assert f"(generation {old_generation})" in newer.title
    assert str(old_generation + 1) in newer.title
    assert newer.fix is not None
    assert "botvault restore" in newer.fix


# -- item 17: no save from a stale copy ----------------------------------------------------


def _add_kraken(v: Vault, name: str) -> None:
    v.add(name, exchange="kraken-spot", api_key="A" * 56, api_secret=kraken_secret(),
          general="full", withdrawal="none", note="first note")


def test_rotate_from_an_earlier_handle_keeps_another_handles_edit(vault: Vault,
                                                                  vault_path: Path) -> None:
    _add_kraken(vault, "bot")
    other = Vault.open(vault_path, PASSPHRASE)
    other.edit("bot", note="edited elsewhere", general="read-only", env_key="MY_KEY")
    new, retired = vault.rotate("bot", api_key="B" * 56, api_secret=kraken_secret())
    assert (new.note, new.general.value, new.env_key) == ("edited elsewhere", "read-only",
                                                          "MY_KEY")
    assert retired.note == "edited elsewhere"
    with Vault.open(vault_path, PASSPHRASE) as fresh:
        assert fresh.get("bot").note == "edited elsewhere"
        assert fresh.get("bot").api_key == "B" * 56


def _edit_in_child(path: str) -> None:
    with cheap_kdf(), Vault.open(path, PASSPHRASE) as v:
        v.edit("bot", note="edited by another process", env_secret="THE_SECRET")


def test_rotate_keeps_an_edit_made_by_another_process(vault: Vault, vault_path: Path) -> None:
    _add_kraken(vault, "bot")
    proc = multiprocessing.get_context("fork").Process(target=_edit_in_child,
                                                       args=(str(vault_path),))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    new, _ = vault.rotate("bot", api_key="C" * 56, api_secret=kraken_secret())
    assert new.note == "edited by another process"
    assert new.env_secret == "THE_SECRET"


def test_the_agent_refuses_an_older_file_even_without_the_record(vault: Vault,
                                                                  vault_path: Path) -> None:
    _save_many(vault, 2)
    old = vault_path.read_bytes()
    agent = Agent(Vault.open(vault_path, PASSPHRASE), ttl=60, idle=60, allow_withdrawal=False)
    add_generic(vault, "later")
    assert agent.handle({"op": "get", "name": "later"})["ok"] is True
    _put_back(vault_path, old)
    seen_generations.record_path(vault_path, vault.vault_id).unlink()  # e.g. a read-only home
    answer = agent.handle({"op": "list"})
    assert answer["ok"] is False
    assert f"went back from generation {vault.generation}" in str(answer)


def test_an_unusable_state_directory_never_stops_a_vault(vault: Vault, vault_path: Path,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    not_a_dir = tmp_path / "state-is-a-file"
    not_a_dir.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(not_a_dir))
    add_generic(vault, "a")
    with Vault.open(vault_path, PASSPHRASE) as again:
        assert "a" in again
        add_generic(again, "b")


def test_a_rolled_back_file_is_refused_before_the_kdf(vault: Vault, vault_path: Path) -> None:
    _save_many(vault, 2)
    old = vault_path.read_bytes()
    add_generic(vault, "later")
    _put_back(vault_path, old)
    # Not "wrong passphrase": the refusal came before the passphrase was tried.
    with pytest.raises(RollbackError):
        Vault.open(vault_path, "not the passphrase at all")


def test_doctor_reports_a_rolled_back_directory_from_the_record(vault: Vault, vault_path: Path,
                                                                tmp_path: Path) -> None:
    _save_many(vault, 2)
    saved = tmp_path / "snapshot"
    shutil.copytree(vault_path.parent, saved)
    old_generation = vault.generation
    add_generic(vault, "after-the-snapshot")
    shutil.rmtree(vault_path.parent)
    shutil.copytree(saved, vault_path.parent)  # no backup is newer: only the record knows
    (found,) = [f for f in check_backups(vault_path, None) if "already seen" in f.title]
    assert found.severity == "fail"
    assert f"generation {old_generation}, but generation {vault.generation}" in found.title

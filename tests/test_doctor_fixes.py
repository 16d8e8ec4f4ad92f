"""Issue 16, points 5 and 6: every doctor finding's fix, when run, removes that finding (one
KDF policy for init, passwd --upgrade-kdf and doctor); doctor knows the files keys were
imported from, searches --scan folders, says where it searched, and removes only the lines
that hold a secret.

Each row makes the situation, checks doctor reports it, runs the commands of the fix doctor
printed (with what a person would type at their prompts) and checks the finding is gone."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botvault import Vault
from botvault._testing import CHEAPEST_TEST_ONLY
from botvault.cli.main import app
from botvault.crypto import FLOOR
from botvault.save_engine import Records
from tests.conftest import PASSPHRASE, kraken_secret

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / "bot").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "bot")
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")
    pass_file.chmod(0o600)
    monkeypatch.setenv("BOTVAULT_PASSPHRASE_FILE", str(pass_file))
    return home


def _doctor(*extra: str) -> tuple[dict[str, list[dict[str, object]]], str]:
    result = runner.invoke(app, ["doctor", "--json", *extra])
    assert result.exit_code in (0, 10), result.stderr
    found: dict[str, list[dict[str, object]]] = {}
    for finding in json.loads(result.stdout):
        found.setdefault(str(finding["check"]), []).append(finding)
    return found, result.stdout


def _failing(check: str, *extra: str) -> dict[str, object]:
    found, out = _doctor(*extra)
    bad = [f for f in found.get(check, []) if f["severity"] != "ok"]
    assert len(bad) == 1, out
    return bad[0]


def _gone(check: str, *extra: str) -> None:
    found, out = _doctor(*extra)
    assert all(f["severity"] == "ok" for f in found.get(check, [])), out


def _fix(check: str) -> None:
    """Run each command of the fix doctor prints for `check`; then it finds nothing there."""
    finding = _failing(check)
    for command in _commands(str(finding["fix"])):
        _run(command)
    _gone(check)


def _run(command: str, stdin: str | None = None) -> None:
    """One command of a fix: botvault's through the CLI, a shell command through sh."""
    argv = shlex.split(command)
    if argv[0] == "botvault":
        result = runner.invoke(app, argv[1:], input=stdin)
        ok = (0, 10) if argv[1] == "doctor" else (0,)  # doctor still reports the rest
        assert result.exit_code in ok, (command, result.stderr)
    else:
        subprocess.run(["sh", "-c", command], check=True)  # noqa: S607 -- the fix under test


def _commands(fix: str) -> list[str]:
    """The commands in a fix text: after the last ': ' (prose before it), split on '; ',
    any parenthesised aside dropped."""
    tail = fix.rsplit(": ", 1)[-1] if ": " in fix else fix
    return [c.split(" (")[0].strip() for c in tail.split("; ")]


def _vault(path: Path, **kdf: object) -> Vault:
    return Vault.create(path, PASSPHRASE, kdf=kdf.get("kdf", CHEAPEST_TEST_ONLY))  # type: ignore[arg-type]


def _add(v: Vault, name: str, **labels: str) -> str:
    secret = kraken_secret()
    v.add(name, exchange="kraken-spot", api_key="K" + name, api_secret=secret,
          general="full", withdrawal=labels.get("withdrawal", "none"),
          account=labels.get("account"))
    return secret


def _new_pair(name: str) -> tuple[str, str]:
    """`rotate NAME` as a person runs it: the new key pair from the exchange."""
    return (f"botvault rotate {name} --api-key NEW{name} --secret-stdin",
            kraken_secret() + "\n")


# -- one row per finding ---------------------------------------------------------------------


@pytest.mark.slow
def test_kdf_fix_removes_the_finding(home: Path, vault_path: Path) -> None:
    """The finding of issue 16: doctor's fix answered "already at least as strong"."""
    _vault(vault_path, kdf=FLOOR).close()
    finding = _failing("kdf-policy")
    assert finding["fix"] == "botvault passwd --upgrade-kdf --keep-passphrase"
    _run(str(finding["fix"]))
    _gone("kdf-policy")


def test_a_default_init_vault_meets_the_policy_doctor_applies() -> None:
    """What `init` makes by default (256 MiB, calibrated, at least the floor of passes,
    2 on a busy machine) is what doctor accepts: no warning a fix cannot remove."""
    from botvault.crypto import KdfParams
    from botvault.kdf_choice import meets_policy, new_vault_kdf

    default = new_vault_kdf()
    busy_machine = KdfParams(default.memory_kib, FLOOR.iterations, default.parallelism)
    assert meets_policy(busy_machine)
    assert not meets_policy(KdfParams(64 * 1024, 8, 1))
    assert not meets_policy(FLOOR)


@pytest.mark.parametrize(("mode", "target"), [(0o644, "file"), (0o777, "dir"),
                                              (0o755, "dir")])
def test_permission_fixes_remove_the_finding(home: Path, vault_path: Path, mode: int,
                                             target: str) -> None:
    _vault(vault_path).close()
    os.chmod(vault_path if target == "file" else vault_path.parent, mode)
    _fix("vault-permissions")


def test_damaged_backup_fix_removes_the_finding(home: Path, vault_path: Path) -> None:
    with _vault(vault_path) as v:
        _add(v, "a")
        _add(v, "b")
    backup = sorted((vault_path.parent / f"{vault_path.name}.backups").iterdir())[-1]
    backup.write_bytes(b"damaged")
    _fix("backups")


def test_withdrawal_fix_removes_the_finding(home: Path, vault_path: Path) -> None:
    with _vault(vault_path) as v:
        _add(v, "w", withdrawal="full")
    finding = _failing("withdrawal-keys")
    for command in _commands(str(finding["fix"])):
        _run(*_new_pair("w")) if command == "botvault rotate w" else _run(command)
    _gone("withdrawal-keys")


def test_key_age_fix_removes_the_finding(home: Path, vault_path: Path) -> None:
    with _vault(vault_path) as v:
        _add(v, "old")

        def aged(records: Records) -> Records:
            records["old"] = v.entry_from(records, "old").with_changes(
                created_at="2020-01-01T00:00:00Z")
            return records

        v.update_records(aged)
    finding = _failing("key-age")
    assert _commands(str(finding["fix"])) == ["botvault rotate old"]
    _run(*_new_pair("old"))
    _gone("key-age")


def test_account_limit_fix_removes_the_finding(home: Path, vault_path: Path) -> None:
    from botvault.entry_rules import new_entry

    with _vault(vault_path) as v:
        v.import_entries([new_entry(f"k{i}", exchange="kraken-spot", api_key=f"K{i}",
                                    api_secret=kraken_secret(), general="none",
                                    withdrawal="none", account="main") for i in range(50)])
    finding = _failing("account-limit")
    (command,) = _commands(str(finding["fix"]))
    assert command == "botvault rm NAME"
    _run("botvault rm k7 --yes")
    _gone("account-limit")


def test_synced_folder_fix_removes_the_finding(home: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    synced = tmp_path / "Dropbox" / "keys" / "vault.bv"
    synced.parent.mkdir(parents=True, mode=0o700)
    os.chmod(synced.parent.parent, 0o700)
    _vault(synced).close()
    monkeypatch.setenv("BOTVAULT_PATH", str(synced))
    finding = _failing("synced-folder")
    assert "move the vault" in str(finding["fix"])
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    for name in (synced.name, f"{synced.name}.backups"):
        if (synced.parent / name).exists():
            _run(f"mv {synced.parent / name} {private / name}")
    monkeypatch.setenv("BOTVAULT_PATH", str(private / synced.name))  # --vault NEWPATH
    _gone("synced-folder")


# -- point 6: where keys came from ------------------------------------------------------------


def _env_file(folder: Path, secret: str) -> Path:
    env = folder / ".env"
    env.write_text(f"# grid bot\nKRAKEN_API_KEY=PUBKEY\nKRAKEN_API_SECRET={secret}\n"
                   "PAIR=XBTUSD\nLEVERAGE=2\n")
    return env


def test_doctor_reports_the_imported_file_from_anywhere_and_its_fix_removes_only_that_line(
        home: Path, tmp_path: Path, vault_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _vault(vault_path).close()
    bots = tmp_path / "elsewhere" / "bots" / "grid"  # neither home nor the working dir
    bots.mkdir(parents=True)
    secret = kraken_secret()
    env = _env_file(bots, secret)
    result = runner.invoke(app, ["import", str(env), "--format", "env", "--name", "grid",
                                 "--exchange", "kraken-spot", "--general", "full",
                                 "--withdrawal", "none"])
    assert result.exit_code == 0, result.stderr
    monkeypatch.chdir(home)  # doctor run from somewhere else entirely
    finding = _failing("plaintext-copies")
    assert finding["where"] == [f"{env}:3"]
    assert str(env) in str(finding["explanation"])  # it says where it searched
    _run("botvault doctor --remove-secret-lines")
    assert env.read_text() == "# grid bot\nKRAKEN_API_KEY=PUBKEY\nPAIR=XBTUSD\nLEVERAGE=2\n"
    assert os.stat(env).st_mode & 0o077 == 0
    _gone("plaintext-copies")
    with Vault.open(vault_path, PASSPHRASE) as v:
        assert v.get("grid").api_secret.reveal() == secret
        assert v.get("grid").imported_from == str(env)


def test_doctor_scan_searches_further_folders_and_says_so(home: Path, tmp_path: Path,
                                                          vault_path: Path) -> None:
    with _vault(vault_path) as v:
        secret = _add(v, "k")
    other = tmp_path / "srv" / "bots"
    (other / "dca").mkdir(parents=True)
    _env_file(other / "dca", secret)
    found, _ = _doctor()
    assert [f["severity"] for f in found["plaintext-copies"]] == ["ok"]
    assert "--scan" not in str(found["plaintext-copies"][0]["explanation"])
    finding = _failing("plaintext-copies", "--scan", str(other))
    assert finding["where"] == [f"{other / 'dca' / '.env'}:3"]
    assert f"{other} and one level down (--scan)" in str(finding["explanation"])


def test_doctor_scan_of_a_missing_folder_fails_before_the_passphrase(home: Path,
                                                                     tmp_path: Path) -> None:
    result = runner.invoke(app, ["doctor", "--scan", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "not a folder" in result.stderr


def test_json_configs_and_histories_are_never_rewritten(home: Path, vault_path: Path) -> None:
    with _vault(vault_path) as v:
        secret = _add(v, "k")
    config = home / "bot" / "config.json"
    config.write_text(json.dumps({"exchange": {"key": "K", "secret": secret}}))
    history = home / ".bash_history"
    history.write_text(f"export KRAKEN_API_SECRET={secret}\nls\n")
    before = (config.read_bytes(), history.read_bytes())
    _run("botvault doctor --remove-secret-lines")
    assert (config.read_bytes(), history.read_bytes()) == before


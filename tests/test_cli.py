"""The command line, through CliRunner (in-process) and through the real console script."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botvault import Vault
from botvault._testing import CHEAPEST_TEST_ONLY, FLOOR_CLI_ARGS
from botvault.cli.main import app
from tests.conftest import PASSPHRASE, kraken_secret

runner = CliRunner()
EXAMPLE_SECRET = ("Examplerttp4AzwRfYEdQ7R7X8Z/04Y4TZPa97pqCypi3xXxAqftygftnI6H9yGV+O "
                  "cUOOJeFtZkr8mVwbAndU3Kz4Q+eG")


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    """`input` is the passphrase line (and what follows), given with --passphrase-stdin:
    standard input is read for the passphrase only when that flag says so."""
    argv = ["--passphrase-stdin", *args] if input is not None else list(args)
    result = runner.invoke(app, argv, input=input)
    return result.exit_code, result.stdout, result.stderr


def passphrase_file() -> Path:
    """A private file holding PASSPHRASE, beside this test's vault."""
    path = Path(os.environ["BOTVAULT_PATH"]).parent.parent / "passphrase"
    path.write_text(f"{PASSPHRASE}\n")
    path.chmod(0o600)
    return path


def add(name: str, secret: str, *extra: str, exchange: str = "kraken-futures"
        ) -> tuple[int, str, str]:
    """`add --secret-stdin`: standard input is the secret alone; the passphrase is a file."""
    result = runner.invoke(app, [
        "add", name, "--exchange", exchange, "--api-key", "PUBLICKEY1", "--general", "full",
        "--withdrawal", "none", "--secret-stdin", "--passphrase-file", str(passphrase_file()),
        *extra], input=f"{secret}\n")
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def made(vault_path: Path) -> Path:
    Vault.create(vault_path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY).close()
    return vault_path


def test_version_and_help() -> None:
    code, out, _ = invoke("--version")
    assert (code, out.strip()) == (0, "botvault 0.2.0")
    for command in ("init", "add", "list", "show", "edit", "rename", "rm", "passwd", "restore"):
        code, out, _ = invoke(command, "--help")
        assert code == 0
        assert "--vault" in out and "--passphrase-file" in out


def test_init_through_cli(vault_path: Path) -> None:
    code, out, err = invoke("init", *FLOOR_CLI_ARGS, "--allow-weak-passphrase",
                            input=f"{PASSPHRASE}\n")
    assert code == 0, err
    assert f"created vault at {vault_path}" in out
    assert "19 MiB, 2 passes, 1 lanes" in out
    assert "below the recommended 256 MiB" in err
    assert "unlocking" not in err  # stderr is not a terminal here
    assert stat.S_IMODE(vault_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(vault_path.parent.stat().st_mode) == 0o700
    code, _, err = invoke("init", *FLOOR_CLI_ARGS, input=f"{PASSPHRASE}\n")
    assert code == 4
    assert err.startswith("botvault: error: a vault exists already")


@pytest.mark.parametrize("flags", [("--kdf-memory", "8", "--kdf-iterations", "2"),
                                   ("--kdf-memory", "64", "--kdf-iterations", "1"),
                                   ("--kdf-memory", "64", "--kdf-iterations", "2",
                                    "--kdf-parallelism", "17")])
def test_init_refuses_below_floor(vault_path: Path, flags: tuple[str, ...]) -> None:
    code, _, err = invoke("init", *flags, input=f"{PASSPHRASE}\n")
    assert code == 2
    assert "KDF parameters out of range" in err
    assert not vault_path.exists()


def test_add_list_show(made: Path) -> None:
    secret = kraken_secret()
    code, out, err = add("kf", secret)
    assert code == 0, err
    fingerprint = Vault.open(made, PASSPHRASE).get("kf").fingerprint
    assert f"fingerprint: {fingerprint}" in out
    code, out, err = invoke("list", "--json", input=f"{PASSPHRASE}\n")
    assert code == 0
    docs = json.loads(out)
    assert [sorted(d) for d in docs] == [sorted(["name", "exchange", "general", "withdrawal",
                                                 "account", "created_at"])]
    code, out, _ = invoke("show", "kf", "--json", input=f"{PASSPHRASE}\n")
    doc = json.loads(out)
    assert set(doc) == {"name", "exchange", "api_key", "general", "withdrawal", "account",
                        "note", "nonce_unit", "created_at"}
    assert doc["api_key"] == "PUBLICKEY1"
    code, out, _ = invoke("show", "kf", "--json", "--reveal", input=f"{PASSPHRASE}\n")
    assert json.loads(out)["api_secret"] == secret
    code, out, _ = invoke("show", "kf", input=f"{PASSPHRASE}\n")
    assert code == 0 and "PUBLICKEY1" in out and fingerprint in out


def test_secret_never_leaks_without_reveal(made: Path) -> None:
    secret = kraken_secret()
    outputs = [add("kf", secret), add("kf", secret),  # the second fails: exists
               invoke("list", input=f"{PASSPHRASE}\n"),
               invoke("list", "--json", input=f"{PASSPHRASE}\n"),
               invoke("show", "kf", input=f"{PASSPHRASE}\n"),
               invoke("show", "kf", "--json", input=f"{PASSPHRASE}\n"),
               invoke("show", "kf", input="wrong passphrase\n"),
               invoke("edit", "kf", "--note", "x", input=f"{PASSPHRASE}\n"),
               invoke("rename", "kf", "kf2", input=f"{PASSPHRASE}\n"),
               invoke("restore", "--list", input=f"{PASSPHRASE}\n")]
    assert [code for code, _, _ in outputs] == [0, 4, 0, 0, 0, 0, 3, 0, 0, 0]
    for _, out, err in outputs:
        assert secret not in out and secret not in err
        assert secret[:16] not in out + err


def test_wrong_passphrase_exit_3_one_line(made: Path) -> None:
    before = made.read_bytes()
    code, out, err = invoke("list", input="nope nope nope\n")
    assert code == 3
    assert out == ""
    assert err == "botvault: error: wrong passphrase or the vault was modified\n"
    assert made.read_bytes() == before


def test_kraken_example_secret_refused(made: Path) -> None:
    code, _, err = add("kf", EXAMPLE_SECRET)
    assert code == 2
    assert "not valid base64" in err and "94 characters" in err
    assert "Examplerttp4" not in err
    assert len(Vault.open(made, PASSPHRASE)) == 0


def test_pasted_space_is_removed_with_warning(made: Path) -> None:
    secret = kraken_secret()
    code, _, err = add("kf", secret[:40] + " " + secret[40:])
    assert code == 0
    assert "removed 1 whitespace character from the secret" in err
    assert Vault.open(made, PASSPHRASE).get("kf").api_secret.reveal() == secret


def test_missing_scope_is_usage_error_without_terminal(made: Path) -> None:
    code, _, err = invoke("add", "kf", "--exchange", "kraken-spot", "--api-key", "K",
                          "--general", "full", input=f"{PASSPHRASE}\n")
    assert code == 2
    assert "missing --withdrawal" in err


@pytest.mark.parametrize(("args", "code"), [
    (("show", "nope"), 4), (("rm", "nope", "--yes"), 4), (("rename", "nope", "x"), 4),
    (("edit", "nope", "--note", "x"), 4), (("edit", "kf"), 2), (("rm", "kf"), 2),
    (("add", "Bad Name", "--exchange", "generic"), 2), (("restore",), 2),
    (("restore", "99", "--yes"), 4), (("edit", "kf", "--general", "admin"), 2),
])
def test_error_exit_codes(made: Path, args: tuple[str, ...], code: int) -> None:
    assert add("kf", kraken_secret())[0] == 0
    got, _, err = invoke(*args, input=f"{PASSPHRASE}\n")
    assert got == code, err
    assert err.startswith("botvault: error: ")
    assert "Traceback" not in err


def test_edit_rename_rm_flow(made: Path) -> None:
    add("kf", kraken_secret())
    assert invoke("edit", "kf", "--general", "read-only", "--account", "main",
                  input=f"{PASSPHRASE}\n")[0] == 0
    assert invoke("rename", "kf", "bot-a", input=f"{PASSPHRASE}\n")[0] == 0
    entry = Vault.open(made, PASSPHRASE).get("bot-a")
    assert (entry.general.value, entry.account) == ("read-only", "main")
    assert invoke("rm", "bot-a", "--yes", input=f"{PASSPHRASE}\n")[0] == 0
    assert len(Vault.open(made, PASSPHRASE)) == 0


def test_locked_when_no_passphrase_source(made: Path) -> None:
    code, _, err = invoke("list", input="")
    assert code == 5
    assert "hint: " in err and "botvault unlock" in err


def test_passphrase_file_and_command(made: Path, tmp_path: Path) -> None:
    pf = tmp_path / "pass"
    pf.write_text(PASSPHRASE + "\n")
    pf.chmod(0o600)
    assert invoke("list", "--passphrase-file", str(pf))[0] == 0
    pf.chmod(0o644)
    code, _, err = invoke("list", "--passphrase-file", str(pf))
    assert code == 7
    assert f"chmod 600 {pf}" in err
    cmd = f"{shutil.which('printf')} '%s\\n' '{PASSPHRASE}'"
    assert invoke("list", "--passphrase-command", cmd)[0] == 0
    assert invoke("list", "--passphrase-command", "false")[0] == 5


def test_passwd(made: Path, tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.write_text("another long passphrase\n")
    new.chmod(0o600)
    code, out, _ = invoke("passwd", "--new-passphrase-file", str(new), input=f"{PASSPHRASE}\n")
    assert code == 0
    assert out.splitlines()[0] == "passphrase changed"
    assert invoke("list", input=f"{PASSPHRASE}\n")[0] == 3
    assert invoke("list", input="another long passphrase\n")[0] == 0


def test_insecure_vault_mode_hint(made: Path) -> None:
    made.chmod(0o644)
    code, _, err = invoke("list", input=f"{PASSPHRASE}\n")
    assert code == 7
    assert f"hint: run: chmod 600 {made}" in err


def test_not_a_vault_exit_8(vault_path: Path) -> None:
    vault_path.parent.mkdir(mode=0o700)
    vault_path.write_bytes(b"just some text file\n")
    vault_path.chmod(0o600)
    code, _, err = invoke("list", input=f"{PASSPHRASE}\n")
    assert code == 8
    assert "not a botvault vault" in err


# -- through the real console script -----------------------------------------------------

def _run(args: list[str], *, input: str, env: dict[str, str],
         umask: int | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("botvault") or ""
    argv = [exe, *args] if exe else [sys.executable, "-m", "botvault",
                                     *args]
    return subprocess.run(argv, input=input, env=env, text=True, capture_output=True,
                           timeout=60, check=False,
                           preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def test_real_process_flow_under_umask_000(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "vault.bv"
    env = {**os.environ, "BOTVAULT_PATH": str(path)}
    done = _run(["init", *FLOOR_CLI_ARGS, "--passphrase-stdin", "--allow-weak-passphrase"],
                input=f"{PASSPHRASE}\n", env=env, umask=0)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    secret = kraken_secret()
    done = _run(["add", "kf", "--exchange", "kraken-spot", "--api-key", "K1", "--general",
                 "read-only", "--withdrawal", "none", "--secret-stdin", "--passphrase-file",
                 str(passphrase_file())], input=f"{secret}\n", env=env, umask=0)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{path}.lock").stat().st_mode) == 0o600
    done = _run(["show", "kf", "--reveal", "--json", "--passphrase-stdin"],
                input=f"{PASSPHRASE}\n", env=env)
    assert json.loads(done.stdout)["api_secret"] == secret
    done = _run(["list", "--passphrase-stdin"], input="wrong\n", env=env)
    assert done.returncode == 3
    assert done.stderr == "botvault: error: wrong passphrase or the vault was modified\n"
    done = _run(["list"], input="", env=env)
    assert done.returncode == 5

"""import / export / rotate / doctor, and init / passwd policies, through CliRunner.

No agent is involved here; stdin is not a terminal, so the vault passphrase is the first
stdin line. Only `run` (which execs) goes through a real subprocess, on a KDF-floor vault.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botvault import AuthenticationError, Vault
from botvault._testing import CHEAPEST_TEST_ONLY, FLOOR_CLI_ARGS
from botvault.cli.main import app
from botvault.crypto import FLOOR, RECOMMENDED_MEMORY_KIB
from botvault.passphrase_policy import wordlist
from tests.conftest import PASSPHRASE, kraken_secret

runner = CliRunner()
EXPORT_PASSPHRASE = "export passphrase for the usb stick"
OTHER_PASSPHRASE = "another vault passphrase"
_SCRIPT = Path(sys.executable).with_name("botvault")
BOTVAULT = [str(_SCRIPT)] if _SCRIPT.exists() else [
    sys.executable, "-c", "from botvault.cli.main import main; main()"]


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    """`input` is the passphrase line (and what follows), given with --passphrase-stdin."""
    from botvault.cli.main import app

    argv = ["--passphrase-stdin", *args] if input is not None else list(args)
    result = runner.invoke(app, argv, input=input)
    return result.exit_code, result.stdout, result.stderr


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


# -- export / import --botvault ---------------------------------------------------------------


@pytest.fixture
def stocked(vault: Vault) -> dict[str, str]:
    """Entries of every kind, one rotated (so a retired pair too): name -> secret."""
    secrets = {"futures-main-bot": kraken_secret(), "spot-readonly-bot": kraken_secret(),
               "generic-exchange-x": "generic secret, ünïcode & 'quotes'"}
    vault.add("futures-main-bot", exchange="kraken-futures", api_key="FUTURESPUBLICKEY1",
              api_secret=secrets["futures-main-bot"], general="full", withdrawal="none",
              account="account-one", note="first note", nonce_unit="10ns",
              env_key="FUT_KEY_VAR", env_secret="FUT_SECRET_VAR")
    vault.add("spot-readonly-bot", exchange="kraken-spot", api_key="SPOTPUBLICKEY2",
              api_secret=secrets["spot-readonly-bot"], general="read-only", withdrawal="full",
              nonce_unit="us")
    vault.add("generic-exchange-x", exchange="generic", api_key="GENERICPUBLICKEY3",
              api_secret=secrets["generic-exchange-x"], general="read-only", withdrawal="none")
    secrets["spot-readonly-bot.retired-1"] = secrets["spot-readonly-bot"]
    secrets["spot-readonly-bot"] = kraken_secret()
    vault.rotate("spot-readonly-bot", api_key="SPOTPUBLICKEY4",
                 api_secret=secrets["spot-readonly-bot"])
    return secrets


def _shown(vault_path: Path, passphrase: str) -> dict[str, dict[str, object]]:
    """Every entry (retired too) as `show NAME --json --reveal` prints it."""
    code, out, err = invoke("list", "--all", "--json", "--vault", str(vault_path),
                            input=f"{passphrase}\n")
    assert code == 0, err
    shown = {}
    for doc in json.loads(out):
        code, out, err = invoke("show", doc["name"], "--json", "--reveal", "--vault",
                                str(vault_path), input=f"{passphrase}\n")
        assert code == 0, err
        shown[doc["name"]] = json.loads(out)
    return shown


def _fresh(path: Path) -> Path:
    """A new, empty vault under OTHER_PASSPHRASE."""
    Vault.create(path, OTHER_PASSPHRASE, kdf=CHEAPEST_TEST_ONLY).close()
    return path


def test_export_import_round_trip_and_no_plaintext(vault_path: Path, tmp_path: Path,
                                                   stocked: dict[str, str]) -> None:
    passfile = private_file(tmp_path / "export-pass", EXPORT_PASSPHRASE + "\n")
    out_file = tmp_path / "usb" / "backup.bv"
    code, out, err = invoke("export", str(out_file), "--export-passphrase-file", str(passfile),
                            input=f"{PASSPHRASE}\n")
    assert code == 0, err
    assert out.splitlines()[0] == f"exported 4 entries to {out_file}"

    raw = out_file.read_bytes()
    for name, secret in stocked.items():
        assert name.encode() not in raw
        assert secret.encode() not in raw
        assert secret.encode("utf-16-le") not in raw
    for key in ("FUTURESPUBLICKEY1", "SPOTPUBLICKEY2", "GENERICPUBLICKEY3", "SPOTPUBLICKEY4",
                "FUT_KEY_VAR", "account-one", "first note"):
        assert key.encode() not in raw
    for name in ("futures-main-bot", "spot-readonly-bot"):
        assert base64.b64decode(stocked[name]) not in raw

    other = _fresh(tmp_path / "other" / "vault.bv")
    code, out, err = invoke("import", str(out_file), "--format", "botvault",
                            "--import-passphrase-file", str(passfile), "--vault", str(other),
                            input=f"{OTHER_PASSPHRASE}\n")
    assert code == 0, err
    assert out.startswith("imported ")
    assert "delete it" not in err  # an encrypted export is not a plaintext to shred

    original, imported = _shown(vault_path, PASSPHRASE), _shown(other, OTHER_PASSPHRASE)
    assert sorted(imported) == sorted(stocked)
    assert imported == original
    # Labels `show` does not print travel too: the variable names and the retired flag.
    code, out, _ = invoke("env", "futures-main-bot", "--format", "json", "--vault", str(other),
                          input=f"{OTHER_PASSPHRASE}\n")
    assert (code, json.loads(out)) == (0, {"FUT_KEY_VAR": "FUTURESPUBLICKEY1",
                                           "FUT_SECRET_VAR": stocked["futures-main-bot"]})
    code, out, _ = invoke("list", "--json", "--vault", str(other),
                          input=f"{OTHER_PASSPHRASE}\n")
    assert "spot-readonly-bot.retired-1" not in [d["name"] for d in json.loads(out)]


def test_export_only_one_entry(tmp_path: Path, stocked: dict[str, str]) -> None:
    passfile = private_file(tmp_path / "export-pass", EXPORT_PASSPHRASE + "\n")
    out_file = tmp_path / "one.bv"
    code, out, err = invoke("export", str(out_file), "--export-passphrase-file", str(passfile),
                            "--only", "generic-exchange-x", input=f"{PASSPHRASE}\n")
    assert code == 0, err
    assert out.splitlines()[0] == f"exported 1 entry to {out_file}"
    other = _fresh(tmp_path / "other" / "vault.bv")
    code, _, err = invoke("import", str(out_file), "--format", "botvault",
                          "--import-passphrase-file", str(passfile), "--vault", str(other),
                          input=f"{OTHER_PASSPHRASE}\n")
    assert code == 0, err
    assert list(_shown(other, OTHER_PASSPHRASE)) == ["generic-exchange-x"]
    code, _, err = invoke("export", str(tmp_path / "none.bv"), "--export-passphrase-file",
                          str(passfile), "--only", "no-such-entry", input=f"{PASSPHRASE}\n")
    assert code == 4, err
    assert not (tmp_path / "none.bv").exists()


def test_tampered_or_wrongly_unlocked_export_imports_nothing(tmp_path: Path,
                                                             stocked: dict[str, str]) -> None:
    passfile = private_file(tmp_path / "export-pass", EXPORT_PASSPHRASE + "\n")
    out_file = tmp_path / "backup.bv"
    assert invoke("export", str(out_file), "--export-passphrase-file", str(passfile),
                  input=f"{PASSPHRASE}\n")[0] == 0
    other = _fresh(tmp_path / "other" / "vault.bv")
    before = other.read_bytes()
    wrong = private_file(tmp_path / "wrong-pass", "not the export passphrase\n")
    code, out, err = invoke("import", str(out_file), "--format", "botvault",
                            "--import-passphrase-file", str(wrong), "--vault", str(other),
                            input=f"{OTHER_PASSPHRASE}\n")
    assert (code, out) == (3, "")
    assert err == "botvault: error: wrong passphrase or the vault was modified\n"

    data = bytearray(out_file.read_bytes())
    data[-5] ^= 0x01  # inside the last sealed record
    out_file.write_bytes(bytes(data))
    code, out, err = invoke("import", str(out_file), "--format", "botvault",
                            "--import-passphrase-file", str(passfile), "--vault", str(other),
                            input=f"{OTHER_PASSPHRASE}\n")
    assert (code, out) == (3, "")
    assert err == "botvault: error: wrong passphrase or the vault was modified\n"
    assert other.read_bytes() == before
    assert len(Vault.open(other, OTHER_PASSPHRASE)) == 0


def test_export_passphrase_shorter_than_10_is_refused(tmp_path: Path,
                                                      stocked: dict[str, str]) -> None:
    passfile = private_file(tmp_path / "export-pass", "short pw\n")  # 8 characters
    out_file = tmp_path / "backup.bv"
    code, out, err = invoke("export", str(out_file), "--export-passphrase-file", str(passfile),
                            input=f"{PASSPHRASE}\n")
    assert (code, out) == (2, "")
    assert err.startswith("botvault: error: the passphrase is 8 characters; at least 10")
    assert not out_file.exists()


# -- import from plaintext files -------------------------------------------------------------


def _plaintext(kind: str, directory: Path, key: str, secret: str) -> Path:
    if kind == "env":
        return private_file(directory / ".env", f"# the bot's keys\nexport KRAKEN_API_KEY={key}"
                            f"\nKRAKEN_API_SECRET=\"{secret}\"\n")
    if kind == "ccxt":
        return private_file(directory / "keys.json", json.dumps(
            {"kraken": {"apiKey": key, "secret": secret}}, indent=2))
    return private_file(directory / "config.json", (
        "{\n  // freqtrade accepts comments\n  \"bot_name\": \"ft-bot\",\n"
        f"  \"exchange\": {{\"name\": \"kraken\", \"key\": \"{key}\", \"secret\": \"{secret}\","
        "},\n  /* and trailing commas */\n}\n"))


@pytest.mark.parametrize("kind", ["env", "ccxt", "freqtrade"])
def test_import_plaintext_stores_the_pair_and_warns(vault: Vault, vault_path: Path,
                                                     tmp_path: Path, kind: str) -> None:
    secret = kraken_secret()
    source = _plaintext(kind, tmp_path, "PUBLICFROMFILE", secret)
    code, out, err = invoke("import", str(source), "--format", kind, "--name", "imported-bot",
                            "--general", "full", "--withdrawal", "full",
                            input=f"{PASSPHRASE}\n")
    assert code == 0, err
    assert out == f"imported imported-bot from {source}\n"
    assert f"botvault: warning: {source} still holds the secret in plaintext: delete it" in err
    assert secret not in out + err and secret[:12] not in out + err
    with Vault.open(vault_path, PASSPHRASE) as v:
        entry = v.get("imported-bot")
        assert (entry.exchange, entry.api_key, entry.api_secret.reveal()) == (
            "kraken-spot", "PUBLICFROMFILE", secret)
        assert (entry.general.value, entry.withdrawal.value) == ("full", "full")


def test_import_freqtrade_takes_the_bot_name(vault: Vault, vault_path: Path,
                                             tmp_path: Path) -> None:
    source = _plaintext("freqtrade", tmp_path, "PUBLICFROMFILE", kraken_secret())
    code, out, err = invoke("import", str(source), "--format", "freqtrade", "--general",
                            "read-only", "--withdrawal", "none", input=f"{PASSPHRASE}\n")
    assert code == 0, err
    assert out == f"imported ft-bot from {source}\n"
    assert Vault.open(vault_path, PASSPHRASE).get("ft-bot").general.value == "read-only"


@pytest.mark.parametrize("kind", ["env", "ccxt", "freqtrade"])
@pytest.mark.parametrize("bad", ["bm90IGEgcmVhbCBzZWNyZXQ=",  # base64, but only 17 bytes
                                 "not!base64!at-all!nope!!nope!!nope!nope"])
def test_import_refuses_an_invalid_kraken_secret(vault: Vault, vault_path: Path,
                                                 tmp_path: Path, kind: str, bad: str) -> None:
    before = vault_path.read_bytes()
    source = _plaintext(kind, tmp_path, "PUBLICFROMFILE", bad)
    code, out, err = invoke("import", str(source), "--format", kind, "--name", "imported-bot",
                            "--general", "full", "--withdrawal", "none",
                            input=f"{PASSPHRASE}\n")
    assert (code, out) == (2, "")
    assert err.startswith("botvault: error: the secret ")
    assert bad not in err and bad[:10] not in err
    assert vault_path.read_bytes() == before
    assert len(Vault.open(vault_path, PASSPHRASE)) == 0


# -- rotate ----------------------------------------------------------------------------------


def test_rotate_keeps_labels_and_retires_the_old_pair(vault_path: Path, tmp_path: Path) -> None:
    old_secret, new_secret = kraken_secret(), kraken_secret()
    # KDF floor, not the cheap test KDF: `run` below is a real process.
    with Vault.create(vault_path, PASSPHRASE, kdf=FLOOR) as v:
        v.add("rot-bot", exchange="kraken-futures", api_key="OLDPUBLICKEY",
              api_secret=old_secret, general="read-only", withdrawal="none", nonce_unit="us")
    pp = f"{PASSPHRASE}\n"
    assert invoke("edit", "rot-bot", "--env-key", "ROT_KEY", "--env-secret", "ROT_SECRET",
                  input=pp)[0] == 0
    passfile = private_file(tmp_path / "vault-pass", f"{PASSPHRASE}\n")
    result = runner.invoke(app, ["rotate", "rot-bot", "--api-key", "NEWPUBLICKEY",
                                 "--secret-stdin", "--passphrase-file", str(passfile)],
                           input=f"{new_secret}\n")
    code, out, err = result.exit_code, result.stdout, result.stderr
    assert code == 0, err
    with Vault.open(vault_path, PASSPHRASE) as v:
        new, old = v.get("rot-bot"), v.get("rot-bot.retired-1")
    assert out.splitlines() == [
        f"rotated rot-bot; fingerprint: {new.fingerprint}",
        "old pair kept as rot-bot.retired-1: revoke it on the exchange, then "
        "`botvault rm rot-bot.retired-1`"]
    assert new_secret not in out + err
    assert (new.api_key, new.api_secret.reveal(), new.retired) == (
        "NEWPUBLICKEY", new_secret, False)
    assert (old.api_key, old.api_secret.reveal(), old.retired) == (
        "OLDPUBLICKEY", old_secret, True)
    for entry in (new, old):
        assert (entry.exchange, entry.general.value, entry.withdrawal.value, entry.nonce_unit,
                entry.env_key, entry.env_secret) == (
            "kraken-futures", "read-only", "none", "us", "ROT_KEY", "ROT_SECRET")

    code, out, _ = invoke("list", "--json", input=pp)
    assert [d["name"] for d in json.loads(out)] == ["rot-bot"]
    code, out, _ = invoke("list", input=pp)
    assert "retired" not in out
    code, out, _ = invoke("list", "--all", "--json", input=pp)
    assert [d["name"] for d in json.loads(out)] == ["rot-bot", "rot-bot.retired-1"]
    code, out, _ = invoke("list", "--all", input=pp)
    assert "rot-bot.retired-1 (retired)" in out

    code, out, _ = invoke("env", "rot-bot", "--format", "json", input=pp)
    assert (code, json.loads(out)) == (0, {"ROT_KEY": "NEWPUBLICKEY", "ROT_SECRET": new_secret})
    code, out, err = invoke("env", "rot-bot.retired-1", input=pp)
    assert (code, out) == (6, "")
    assert "retired" in err and old_secret not in err

    marker = tmp_path / "started"
    done = subprocess.run([*BOTVAULT, "--passphrase-stdin", "run", "rot-bot.retired-1", "--",
                           "touch", str(marker)],
                          input=pp, capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout) == (6, "")
    assert "retired" in done.stderr
    assert not marker.exists()
    done = subprocess.run([*BOTVAULT, "--passphrase-stdin", "run", "rot-bot", "--", "touch",
                           str(marker)],
                          input=pp, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert marker.exists()


# -- doctor ----------------------------------------------------------------------------------


@pytest.fixture
def home_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """doctor searches Path.home() and Path.cwd(): a fake home, and a project outside it."""
    home, cwd = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home, cwd


FINDING_KEYS = {"check", "severity", "title", "explanation", "fix", "where"}


def _doctor_json() -> tuple[int, list[dict[str, object]], str]:
    code, out, err = invoke("doctor", "--json", input=f"{PASSPHRASE}\n")
    findings = json.loads(out)
    assert isinstance(findings, list)
    return code, findings, err


def _plaintext_findings(findings: list[dict[str, object]]) -> list[dict[str, object]]:
    return [f for f in findings if f["check"] == "plaintext-copies"]


def test_doctor_reports_a_plaintext_secret_by_file_and_line(
        vault: Vault, home_and_cwd: tuple[Path, Path]) -> None:
    home, cwd = home_and_cwd
    secret = kraken_secret()
    vault.add("leaky-bot", exchange="kraken-spot", api_key="LEAKYPUBLIC", api_secret=secret,
              general="read-only", withdrawal="none")
    _, findings, _ = _doctor_json()
    assert [f["severity"] for f in _plaintext_findings(findings)] == ["ok"]  # nothing yet

    (cwd / ".env").write_text(f"# keys\nKRAKEN_API_KEY=LEAKYPUBLIC\nKRAKEN_API_SECRET={secret}\n")
    (home / ".bash_history").write_text(f"ls\nexport S={secret}\n")
    code, out, err = invoke("doctor", input=f"{PASSPHRASE}\n")
    assert code == 10
    assert "[fail] the secret of leaky-bot is stored in plaintext outside the vault" in out
    assert f"- {cwd}/.env:3" in out
    assert "- ~/.bash_history:2" in out
    assert "botvault rotate leaky-bot" in out
    assert secret not in out + err and secret[:12] not in out + err

    code, findings, err = _doctor_json()
    assert code == 10
    assert all(set(f) == FINDING_KEYS for f in findings)
    assert all(f["severity"] in ("ok", "warn", "fail") for f in findings)
    assert all(isinstance(f["where"], list) for f in findings)
    (leak,) = _plaintext_findings(findings)
    assert leak["severity"] == "fail"
    where = leak["where"]
    assert isinstance(where, list)
    assert sorted(where) == sorted([f"{cwd}/.env:3", "~/.bash_history:2"])
    assert secret not in json.dumps(findings) + err


# -- init and passwd -------------------------------------------------------------------------


def test_init_generate_passphrase_prints_it_once_and_it_opens(vault_path: Path) -> None:
    code, out, err = invoke("init", "--generate-passphrase", *FLOOR_CLI_ARGS, input="")
    assert code == 0, err
    prefix = "your passphrase (shown once): "
    lines = [line for line in out.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1
    passphrase = lines[0].removeprefix(prefix)
    words = passphrase.split(" ")
    assert len(words) >= 6
    assert set(words) <= set(wordlist())
    assert (out + err).count(passphrase) == 1
    with Vault.open(vault_path, passphrase) as v:
        assert len(v) == 0
    assert invoke("list", input="a wrong passphrase\n")[0] == 3


def test_passwd_generate_passphrase_replaces_the_old_one(vault_path: Path) -> None:
    Vault.create(vault_path, "the first long passphrase", kdf=CHEAPEST_TEST_ONLY).close()
    code, out, err = invoke("passwd", "--generate-passphrase",
                            input="the first long passphrase\n")
    assert code == 0, err
    prefix = "your passphrase (shown once): "
    (line,) = [x for x in out.splitlines() if x.startswith(prefix)]
    new = line.removeprefix(prefix)
    assert len(new.split(" ")) >= 6
    Vault.open(vault_path, new).close()
    with pytest.raises(AuthenticationError):
        Vault.open(vault_path, "the first long passphrase")
    assert invoke("passwd", "--generate-passphrase", "--keep-passphrase", "--upgrade-kdf",
                  input=f"{new}\n")[0] == 2


def test_init_refuses_a_short_passphrase(vault_path: Path) -> None:
    code, out, err = invoke("init", *FLOOR_CLI_ARGS, input="abcde\n")
    assert (code, out) == (2, "")
    assert err.startswith("botvault: error: the passphrase is 5 characters; at least 10")
    assert not os.path.lexists(vault_path)


@pytest.mark.slow
def test_passwd_upgrade_kdf_keeping_the_passphrase(vault_path: Path) -> None:
    Vault.create(vault_path, PASSPHRASE, kdf=FLOOR).close()
    assert invoke("passwd", "--keep-passphrase", input=f"{PASSPHRASE}\n")[0] == 2
    code, out, err = invoke("passwd", "--upgrade-kdf", "--keep-passphrase",
                            input=f"{PASSPHRASE}\n")
    assert code == 0, err
    assert out.splitlines()[0] == "key derivation upgraded"
    with Vault.open(vault_path, PASSPHRASE) as v:  # about a second: the new cost
        assert v.kdf.memory_kib >= RECOMMENDED_MEMORY_KIB
        assert v.kdf.memory_kib >= 256 * 1024

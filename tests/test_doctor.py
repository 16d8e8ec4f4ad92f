"""botvault.doctor: each check on a prepared home and working directory, and a clean setup."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botvault import Vault
from botvault.crypto import FLOOR, RECOMMENDED_MEMORY_KIB, KdfParams
from botvault.doctor import EXIT_FINDINGS, Finding, check_plaintext_copies, diagnose, exit_code
from botvault.entries import Entry
from botvault.scopes import General, Withdrawal
from botvault.secret import Secret
from tests.conftest import PASSPHRASE, kraken_secret

NOW = datetime.now(timezone.utc)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("alias ll='ls -l'\n")
    return home


@pytest.fixture
def cwd(home: Path) -> Path:
    cwd = home / "bot"
    cwd.mkdir()
    return cwd


def _add(v: Vault, name: str, *, secret: str | None = None, withdrawal: str = "none",
         account: str | None = None) -> str:
    secret = secret or kraken_secret()
    v.add(name, exchange="kraken-spot", api_key="K" + name.replace(".", "x"), api_secret=secret,
          general="full", withdrawal=withdrawal, account=account)
    return secret


def _run(path: Path, v: Vault | None, home: Path, cwd: Path, *, now: datetime = NOW,
         max_key_age_days: int = 90) -> list[Finding]:
    return diagnose(path, v, home=home, cwd=cwd, now=now, max_key_age_days=max_key_age_days)


def _of(findings: list[Finding], check: str) -> list[Finding]:
    return [f for f in findings if f.check == check]


def _only(findings: list[Finding], check: str) -> Finding:
    (found,) = _of(findings, check)
    return found


def _text(f: Finding) -> str:
    return "\n".join([f.title, f.explanation, f.fix or "", *f.where])


def _assert_no_secret(findings: list[Finding], secrets: list[str]) -> None:
    everything = "\n".join(_text(f) for f in findings) + repr(findings)
    for secret in secrets:
        assert secret not in everything
        for i in range(len(secret) - 7):
            assert secret[i:i + 8] not in everything, "a slice of a secret leaked"


# -- a clean setup -------------------------------------------------------------------------


@pytest.fixture
def strong_vault(tmp_path: Path) -> Iterator[Vault]:
    """A vault with today's KDF policy: the one test that pays for a real Argon2id run."""
    kdf = KdfParams(RECOMMENDED_MEMORY_KIB, 3, 1)
    with Vault.create(tmp_path / "private" / "vault.bv", PASSPHRASE, kdf=kdf) as v:
        yield v


def test_clean_setup_passes(strong_vault: Vault, home: Path, cwd: Path) -> None:
    _add(strong_vault, "spot", account="main")
    _add(strong_vault, "futures", account="main")
    (home / ".bash_history").write_text("ls\nbotvault list\n")
    (home / ".env").write_text("EDITOR=vim\n")
    (cwd / "config.json").write_text('{"exchange": {"name": "kraken", "key": "", "secret": ""}}')
    findings = _run(strong_vault.path, strong_vault, home, cwd)
    assert [f for f in findings if f.severity != "ok"] == []
    assert exit_code(findings) == 0
    assert {f.check for f in findings} == {
        "vault-permissions", "kdf-policy", "backups", "synced-folder", "withdrawal-keys",
        "key-age", "account-limit", "plaintext-copies"}


def test_exit_code() -> None:
    ok = Finding("x", "ok", "t", "e", None)
    assert exit_code([]) == 0
    assert exit_code([ok]) == 0
    assert exit_code([ok, Finding("x", "warn", "t", "e", None)]) == EXIT_FINDINGS == 10
    assert exit_code([Finding("x", "fail", "t", "e", "fix")]) == 10
    with pytest.raises(ValueError, match="severity"):
        Finding("x", "bad", "t", "e", None)


# -- permissions ---------------------------------------------------------------------------


def test_vault_file_readable_by_others(vault: Vault, home: Path, cwd: Path) -> None:
    os.chmod(vault.path, 0o644)
    found = _only(_run(vault.path, None, home, cwd), "vault-permissions")
    assert found.severity == "fail"
    assert found.fix == f"chmod 600 {vault.path}"
    assert "644" in found.title


def test_directory_permissions(vault: Vault, home: Path, cwd: Path) -> None:
    os.chmod(vault.path.parent, 0o755)  # noqa: S103 -- the insecure mode under test
    found = _only(_run(vault.path, None, home, cwd), "vault-permissions")
    assert (found.severity, found.fix) == ("warn", f"chmod 700 {vault.path.parent}")
    os.chmod(vault.path.parent, 0o777)  # noqa: S103 -- the insecure mode under test
    found = _only(_run(vault.path, None, home, cwd), "vault-permissions")
    assert (found.severity, found.fix) == ("fail", f"chmod 700 {vault.path.parent}")
    assert "change" in found.explanation


def test_path_with_spaces_is_quoted_in_the_fix(tmp_path: Path, home: Path, cwd: Path) -> None:
    path = tmp_path / "my vaults" / "v.bv"
    with Vault.create(path, PASSPHRASE, kdf=KdfParams(8, 1, 1)):
        pass
    os.chmod(path, 0o640)
    found = _only(_run(path, None, home, cwd), "vault-permissions")
    assert found.fix == f"chmod 600 '{path}'"


def test_nonce_state_and_backups_checked(vault: Vault, home: Path, cwd: Path) -> None:
    _add(vault, "a")
    nonces = vault.path.with_name(vault.path.name + ".nonces")
    nonces.write_bytes(b"")
    # The nonce state is not secret (others may read it, see test_nonces), but no one else
    # may write it: doctor says what the nonce store does.
    os.chmod(nonces, 0o664)
    (backup,) = (vault.path.parent / "vault.bv.backups").iterdir()
    os.chmod(backup, 0o604)
    fixes = {f.fix for f in _of(_run(vault.path, vault, home, cwd), "vault-permissions")}
    assert fixes == {f"chmod 600 {nonces}", f"chmod 600 {backup}"}


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a file away")
def test_foreign_owner(vault: Vault, home: Path, cwd: Path) -> None:
    os.chown(vault.path, 12345, -1)
    found = _only(_run(vault.path, None, home, cwd), "vault-permissions")
    assert found.severity == "fail"
    assert found.fix is not None and found.fix.startswith("sudo chown ")
    assert found.fix.endswith(str(vault.path))


def test_symlinked_vault(vault: Vault, tmp_path: Path, home: Path, cwd: Path) -> None:
    link = vault.path.parent / "link.bv"
    link.symlink_to(vault.path)
    found = _only(_run(link, None, home, cwd), "vault-permissions")
    assert found.severity == "fail"
    assert "symlink" in found.title


def test_missing_vault(tmp_path: Path, home: Path, cwd: Path) -> None:
    findings = _run(tmp_path / "nowhere" / "vault.bv", None, home, cwd)
    assert _only(findings, "vault-permissions").severity == "fail"
    assert "botvault init" in (_only(findings, "vault-permissions").fix or "")
    assert exit_code(findings) == 10


def test_works_without_an_open_vault(vault: Vault, home: Path, cwd: Path) -> None:
    _add(vault, "a", withdrawal="full")
    findings = _run(vault.path, None, home, cwd)
    assert {f.check for f in findings} == {"vault-permissions", "kdf-policy", "backups",
                                           "synced-folder"}
    assert "not checked" in _only(findings, "backups").title


# -- KDF -----------------------------------------------------------------------------------


def test_test_only_kdf_is_below_the_floor(vault: Vault, home: Path, cwd: Path) -> None:
    for v in (vault, None):
        found = _only(_run(vault.path, v, home, cwd), "kdf-policy")
        assert found.severity == "fail"
        assert found.fix == "botvault passwd --upgrade-kdf --keep-passphrase"


def test_floor_kdf_is_below_policy(tmp_path: Path, home: Path, cwd: Path) -> None:
    with Vault.create(tmp_path / "v" / "vault.bv", PASSPHRASE, kdf=FLOOR) as v:
        found = _only(_run(v.path, v, home, cwd), "kdf-policy")
    assert found.severity == "warn"
    assert found.fix == "botvault passwd --upgrade-kdf --keep-passphrase"
    assert "19 MiB" in found.title


def test_not_a_vault(tmp_path: Path, home: Path, cwd: Path) -> None:
    path = tmp_path / "d" / "vault.bv"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"hello, world" * 20)
    os.chmod(path, 0o600)
    found = _only(_run(path, None, home, cwd), "vault-file")
    assert found.severity == "fail"
    assert "magic" in found.explanation


# -- backups -------------------------------------------------------------------------------


def test_backups_verified(vault: Vault, home: Path, cwd: Path) -> None:
    _add(vault, "a")
    _add(vault, "b")
    found = _only(_run(vault.path, vault, home, cwd), "backups")
    assert found.severity == "ok"
    assert "2 automatic backup(s); each one decrypts" in found.title


def test_damaged_backup_named(vault: Vault, home: Path, cwd: Path) -> None:
    _add(vault, "a")
    _add(vault, "b")
    newest = sorted((vault.path.parent / "vault.bv.backups").iterdir())[-1]
    data = newest.read_bytes()
    newest.unlink()  # a backup is a hard link to an old vault: do not write through it
    newest.write_bytes(data[:-10])
    os.chmod(newest, 0o600)
    (found,) = _of(_run(vault.path, vault, home, cwd), "backups")
    assert found.severity == "fail"
    assert found.where == (str(newest),)
    assert found.fix == f"remove it once you have checked the others: rm {newest}"


def test_backup_from_another_vault(vault: Vault, tmp_path: Path, home: Path, cwd: Path
                                   ) -> None:
    _add(vault, "a")
    with Vault.create(tmp_path / "other" / "vault.bv", PASSPHRASE, kdf=KdfParams(8, 1, 1)) as o:
        _add(o, "x")
        (theirs,) = (o.path.parent / "vault.bv.backups").iterdir()
    shutil.copy(theirs, vault.path.parent / "vault.bv.backups" / "gen-000000000099.bv")
    (found,) = _of(_run(vault.path, vault, home, cwd), "backups")
    assert found.severity == "fail"
    assert "does not decrypt" in found.title


def test_missing_backups_warned(vault: Vault, home: Path, cwd: Path) -> None:
    assert _only(_run(vault.path, vault, home, cwd), "backups").severity == "ok"  # empty vault
    _add(vault, "a")
    shutil.rmtree(vault.path.parent / "vault.bv.backups")
    found = _only(_run(vault.path, vault, home, cwd), "backups")
    assert found.severity == "warn"
    assert found.fix is not None


# -- synced folders ------------------------------------------------------------------------


@pytest.mark.parametrize(("folder", "label"), [
    ("Dropbox", "Dropbox"),
    ("Dropbox (Personal)", "Dropbox"),
    ("OneDrive - Acme", "OneDrive"),
    ("Google Drive", "Google Drive"),
    ("Library/CloudStorage/GoogleDrive-me@example.com/My Drive", "Google Drive"),
    ("Library/Mobile Documents/com~apple~CloudDocs", "iCloud"),
    ("iCloud Drive", "iCloud"),
    ("Nextcloud", "Nextcloud"),
    ("ownCloud", "ownCloud"),
])
def test_synced_folder_by_name(tmp_path: Path, home: Path, cwd: Path, folder: str,
                               label: str) -> None:
    path = home / folder / "keys" / "vault.bv"
    found = _only(_run(path, None, home, cwd), "synced-folder")
    assert found.severity == "warn"
    assert label in found.title
    assert "vault.bv.nonces" in found.explanation and "vault.bv.lock" in found.explanation
    assert found.fix is not None and "BOTVAULT_PATH" in found.fix


@pytest.mark.parametrize(("marker", "label"), [(".stfolder", "Syncthing"),
                                               (".git", "git")])
def test_synced_folder_by_marker(home: Path, cwd: Path, marker: str, label: str) -> None:
    (home / "sync" / marker).mkdir(parents=True)
    path = home / "sync" / "deep" / "er" / "vault.bv"
    found = _only(_run(path, None, home, cwd), "synced-folder")
    assert found.severity == "warn"
    assert label in found.title
    if marker == ".git":
        assert found.fix is not None and ".gitignore" in found.fix


@pytest.mark.parametrize("folder", ["dropboxer", "Dropboxes", "onedriver", "My Drivel"])
def test_similar_names_are_not_synced(home: Path, cwd: Path, folder: str) -> None:
    found = _only(_run(home / folder / "vault.bv", None, home, cwd), "synced-folder")
    assert found.severity == "ok"


def test_vault_path_is_a_directory(tmp_path: Path, home: Path, cwd: Path) -> None:
    path = tmp_path / "d" / "vault.bv"
    path.mkdir(parents=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    found = _only(_run(path, None, home, cwd), "vault-permissions")
    assert (found.severity, found.title) == ("fail", f"{path} is not a file")


def test_symlink_into_synced_folder(home: Path, cwd: Path) -> None:
    (home / "Dropbox" / "k").mkdir(parents=True)
    (home / "keys").symlink_to(home / "Dropbox" / "k")
    found = _only(_run(home / "keys" / "vault.bv", None, home, cwd), "synced-folder")
    assert found.severity == "warn"


# -- entries -------------------------------------------------------------------------------


def test_withdrawal_keys_listed(vault: Vault, home: Path, cwd: Path) -> None:
    _add(vault, "trader")
    _add(vault, "treasury", withdrawal="full")
    found = _only(_run(vault.path, vault, home, cwd), "withdrawal-keys")
    assert (found.severity, found.where) == ("warn", ("treasury",))
    assert found.fix is not None and "botvault edit treasury --withdrawal none" in found.fix


def test_old_keys_listed_with_age(vault: Vault, home: Path, cwd: Path) -> None:
    _add(vault, "old")
    found = _only(_run(vault.path, vault, home, cwd), "key-age")
    assert found.severity == "ok"
    later = NOW + timedelta(days=120)
    found = _only(_run(vault.path, vault, home, cwd, now=later), "key-age")
    assert found.severity == "warn"
    assert found.where in (("old (119 days)",), ("old (120 days)",))
    assert found.fix == "botvault rotate old"
    shorter = _run(vault.path, vault, home, cwd, now=NOW + timedelta(days=20),
                   max_key_age_days=10)
    assert _only(shorter, "key-age").severity == "warn"


def test_account_limit(vault: Vault, home: Path, cwd: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(49):
            _add(vault, f"k{i}", account="main")
        _add(vault, "other", account="second")
        assert _only(_run(vault.path, vault, home, cwd), "account-limit").severity == "ok"
        _add(vault, "k49", account="main")
    found = _only(_run(vault.path, vault, home, cwd), "account-limit")
    assert (found.severity, found.where) == ("warn", ("main: 50 keys",))


# -- plaintext copies ----------------------------------------------------------------------


def test_plaintext_copies_found_by_file_and_line(vault: Vault, home: Path, cwd: Path) -> None:
    s_env, s_bash, s_zsh, s_fish, s_json, s_sub = (_add(vault, n) for n in (
        "env", "bash", "zsh", "fish", "json", "sub"))
    clean = _add(vault, "clean")
    (home / ".env").write_text(f"# keys\nKRAKEN_API_KEY=x\nKRAKEN_API_SECRET='{s_env}'\n")
    history = [f"echo {i}" for i in range(1, 42)] + [f"export KRAKEN_API_SECRET={s_bash}"]
    (home / ".bash_history").write_text("\n".join(history) + "\n")
    (home / ".zsh_history").write_text(
        ": 1700000000:0;ls\n: 1700000001:0;export KRAKEN_API_SECRET=" + s_zsh + "\n")
    fish = home / ".local" / "share" / "fish"
    fish.mkdir(parents=True)
    (fish / "fish_history").write_text(
        f"- cmd: ls\n  when: 1700000000\n- cmd: set -x KRAKEN_API_SECRET {s_fish}\n"
        "  when: 1700000001\n")
    (cwd / "config.json").write_text(
        '{\n  "exchange": {\n    "name": "kraken",\n    "key": "K",\n'
        f'    "secret": "{s_json}"\n  }}\n}}\n')
    (home / "otherbot").mkdir()
    (home / "otherbot" / "prod.env").write_text(f"SECRET={s_sub}\nSECRET_AGAIN={s_sub}\n")
    findings = _run(vault.path, vault, home, cwd)
    found = {f.title.split()[3]: f for f in _of(findings, "plaintext-copies")}
    assert {k: v.where for k, v in found.items()} == {
        "bash": ("~/.bash_history:42",),
        "env": ("~/.env:3",),
        "fish": ("~/.local/share/fish/fish_history:3",),
        "json": ("~/bot/config.json:5",),
        "sub": ("~/otherbot/prod.env:1", "~/otherbot/prod.env:2"),
        "zsh": ("~/.zsh_history:2",),
    }
    assert all(f.severity == "fail" for f in found.values())
    assert found["bash"].fix is not None and "botvault rotate bash" in found["bash"].fix
    assert exit_code(findings) == 10
    _assert_no_secret(findings, [s_env, s_bash, s_zsh, s_fish, s_json, s_sub, clean])


def test_retired_secret_still_searched(vault: Vault, home: Path, cwd: Path) -> None:
    old = _add(vault, "bot")
    vault.rotate("bot", api_key="Knew", api_secret=kraken_secret())
    (home / ".bash_history").write_text(f"export KRAKEN_API_SECRET={old}\n")
    (found,) = _of(_run(vault.path, vault, home, cwd), "plaintext-copies")
    assert found.severity == "warn"
    assert "retired" in found.title
    assert found.where == ("~/.bash_history:1",)
    _assert_no_secret([found], [old])


def test_plaintext_search_limits(vault: Vault, tmp_path: Path, home: Path, cwd: Path) -> None:
    secret = _add(vault, "k")
    vault.add("short", exchange="generic", api_key="x", api_secret="abc1234",
              general="read-only", withdrawal="none")
    # Too deep, too big for a JSON config, not a regular file, or a short secret: skipped.
    (home / "a" / "b").mkdir(parents=True)
    (home / "a" / "b" / ".env").write_text(f"S={secret}\n")
    (cwd / "big.json").write_text('{"s": "' + secret + '", "pad": "' + "x" * 1_100_000 + '"}')
    os.mkfifo(cwd / ".env")
    (home / ".history").write_text("abc1234\n")
    (home / ".zsh_history").mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / ".env").write_text(f"S={secret}\n")
    found = _only(_run(vault.path, vault, home, cwd), "plaintext-copies")
    assert found.severity == "ok"


def test_cwd_outside_home_shown_absolute(vault: Vault, tmp_path: Path, home: Path) -> None:
    secret = _add(vault, "k")
    work = tmp_path / "work"
    work.mkdir()
    (work / "keys.json").write_text('{"kraken": {"apiKey": "K", "secret": "' + secret + '"}}')
    (found,) = _of(_run(vault.path, vault, home, work), "plaintext-copies")
    assert found.where == (f"{work / 'keys.json'}:1",)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), st.text("ab \t", max_size=6)), max_size=40))
def test_plaintext_lines_are_exact(tmp_path: Path, lines: list[tuple[bool, str]]) -> None:
    # The scan counts newlines from the previous hit (linear, issue 10.8); every line it
    # reports must still be exactly a line holding the secret, and none may be missed.
    secret = "S3cr3t-" + "x" * 20
    entry = Entry(name="bot", exchange="kraken-spot", api_key="K", api_secret=Secret(secret),
                  general=General.FULL, withdrawal=Withdrawal.NONE)
    home = tmp_path / "prop-home"
    home.mkdir(exist_ok=True)
    text = "".join(f"{pad}{secret}{pad}\n" if has else f"{pad}\n" for has, pad in lines)
    (home / ".bash_history").write_text(text)
    expected = tuple(f"~/.bash_history:{i}" for i, (has, _) in enumerate(lines, 1) if has)
    findings = check_plaintext_copies([entry], home, home)
    if expected:
        (found,) = findings
        assert found.where == expected
    else:
        assert [f.severity for f in findings] == ["ok"]

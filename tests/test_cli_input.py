"""Issue 9: keep exactly what was pasted. Each test goes through the real CLI, in-process
(CliRunner) and as a real process, and would fail without the change it names."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from botvault import Vault
from botvault._testing import CHEAPEST_TEST_ONLY, FLOOR_CLI_ARGS
from botvault.cli.main import app
from tests.agent_support import AGENT_KDF, eventually
from tests.conftest import PASSPHRASE, kraken_secret
from tests.helpers.files import private

runner = CliRunner()
_SCRIPT = Path(sys.executable).with_name("botvault")
BOTVAULT = [str(_SCRIPT)] if _SCRIPT.exists() else [
    sys.executable, "-c", "from botvault.cli.main import main; main()"]
ADD_SPOT = ("add", "kf", "--exchange", "kraken-spot", "--api-key", "SPOTKEY1", "--general",
            "read-only", "--withdrawal", "none")


def cli(args: list[str], input: str | bytes | None = None,
        env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, args, input=input, env=env)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def proc(args: list[str], input: str | bytes | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    data = input.encode() if isinstance(input, str) else input
    return subprocess.run([*BOTVAULT, *args], input=data, capture_output=True, timeout=60,
                          check=False, env=env, stdin=subprocess.DEVNULL if data is None else None)


def both(args: list[str], input: str | bytes | None = None) -> list[tuple[int, str]]:
    """(exit code, stderr) of the command in-process and as a real process."""
    code, _, err = cli(args, input)
    done = proc(args, input)
    return [(code, err), (done.returncode, done.stderr.decode())]


@pytest.fixture
def passfile(tmp_path: Path) -> Path:
    return private(tmp_path / "passphrase", f"{PASSPHRASE}\n")


@pytest.fixture
def made(vault_path: Path) -> Path:
    """A vault the real binary opens too (floor KDF)."""
    Vault.create(vault_path, PASSPHRASE, kdf=AGENT_KDF).close()
    return vault_path


def names(path: Path) -> list[str]:
    with Vault.open(path, PASSPHRASE) as v:
        return [e.name for e in v.list(retired=True)]


@contextlib.contextmanager
def unlocked(passfile: Path, ttl: str = "60s") -> Iterator[bytes]:
    done = proc(["unlock", "--ttl", ttl, "--passphrase-file", str(passfile)])
    assert done.returncode == 0, done.stderr
    found = re.search(rb"agent pid (\d+)", done.stdout)
    assert found is not None
    pid = int(found.group(1))
    try:
        yield done.stdout
    finally:
        proc(["lock"])

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        if not eventually(gone, timeout=3):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- 1. standard input has one meaning ----------------------------------------------------


def test_readme_script_while_unlocked_never_stores_the_passphrase(made: Path,
                                                                   passfile: Path) -> None:
    """The old README script (passphrase line, then secret) with the agent serving: the
    passphrase used to become the secret, exit 0. Now two lines are refused, nothing stored."""
    secret = kraken_secret()
    with unlocked(passfile):
        done = proc([*ADD_SPOT, "--secret-stdin"], input=f"{PASSPHRASE}\n{secret}\n")
        assert done.returncode == 2, done.stderr
        assert b"holds 2 lines" in done.stderr
        assert PASSPHRASE.encode() not in done.stderr + done.stdout
    assert names(made) == []


@pytest.mark.parametrize("runner_kind", ["clirunner", "process"])
def test_secret_wrapped_over_two_lines_is_refused_not_truncated(made: Path, passfile: Path,
                                                                runner_kind: str) -> None:
    secret = kraken_secret()
    wrapped = f"{secret[:40]}\n{secret[40:]}\n"
    args = [*ADD_SPOT, "--secret-stdin", "--passphrase-file", str(passfile)]
    if runner_kind == "clirunner":
        code, _, err = cli(args, wrapped)
    else:
        done = proc(args, wrapped)
        code, err = done.returncode, done.stderr.decode()
    assert code == 2
    assert "2 lines" in err and secret[:12] not in err
    assert names(made) == []


@pytest.mark.parametrize(("data", "message"), [
    (b"", "is empty"), (b"\n", "is empty"), (b"abc\x00def\n", "NUL"),
    (b"x" * (64 * 1024 + 1), "more than 64 KiB"), (b"\xff\xfe secret\n", "not valid UTF-8"),
    (b"one\r\ntwo\r\n", "2 lines")])
def test_bad_secret_stdin_exits_2_and_stores_nothing(made: Path, passfile: Path, data: bytes,
                                                     message: str) -> None:
    code, _, err = cli(["add", "g", "--exchange", "generic", "--api-key", "GKEY", "--general",
                        "read-only", "--withdrawal", "none", "--secret-stdin",
                        "--passphrase-file", str(passfile)], data)
    assert code == 2, err
    assert message in err
    assert "passphrase" not in err.split("hint:")[0]  # the error is about the secret
    assert names(made) == []


@settings(max_examples=30, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(secret=st.text(st.characters(blacklist_categories=["Cs"],
                                    blacklist_characters="\n\r\x00"), min_size=1, max_size=200)
       .filter(lambda s: not s.isspace()),
       ending=st.sampled_from(["", "\n", "\r\n"]))
def test_secret_stdin_keeps_exactly_what_was_piped(tmp_path: Path, secret: str,
                                                   ending: str) -> None:
    path = tmp_path / f"v-{os.urandom(4).hex()}" / "vault.bv"
    pf = private(tmp_path / "pf", f"{PASSPHRASE}\n")
    Vault.create(path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY).close()
    code, _, err = cli(["add", "g", "--exchange", "generic", "--api-key", "GKEY", "--general",
                        "read-only", "--withdrawal", "none", "--secret-stdin", "--vault",
                        str(path), "--passphrase-file", str(pf)], (secret + ending).encode())
    assert code == 0, err
    with Vault.open(path, PASSPHRASE) as v:
        assert v.get("g").api_secret.reveal() == secret


def test_passphrase_and_secret_both_on_stdin_refused_before_reading(made: Path) -> None:
    secret = kraken_secret()
    for run in (cli, proc):
        got = run([*ADD_SPOT, "--secret-stdin", "--passphrase-stdin"],
                  f"{PASSPHRASE}\n{secret}\n")
        code, err = (got[0], got[2]) if isinstance(got, tuple) else (
            got.returncode, got.stderr.decode())
        assert code == 2
        assert "both want standard input" in err and "--passphrase-file" in err
    assert names(made) == []


def test_stdin_is_not_the_passphrase_without_the_flag(made: Path) -> None:
    code, out, err = cli(["list"], f"{PASSPHRASE}\n")
    assert (code, out) == (5, "")
    assert "--passphrase-stdin" in err
    done = proc(["list"], f"{PASSPHRASE}\n")
    assert done.returncode == 5
    assert proc(["list", "--passphrase-stdin"], f"{PASSPHRASE}\n").returncode == 0
    assert proc(["--passphrase-stdin", "list"], f"{PASSPHRASE}\n").returncode == 0


@pytest.mark.parametrize("with_agent", [False, True])
def test_run_never_leaves_the_passphrase_on_the_bots_stdin(made: Path, passfile: Path,
                                                           tmp_path: Path,
                                                           with_agent: bool) -> None:
    with Vault.open(made, PASSPHRASE) as v:
        v.add("bot", exchange="generic", api_key="K", api_secret="s", general="read-only",
              withdrawal="none")
    seen = tmp_path / "bot-stdin"
    argv = ["--passphrase-stdin", "run", "bot", "--", "sh", "-c", f"cat > {seen}"]
    with unlocked(passfile) if with_agent else contextlib.nullcontext(b""):
        done = proc(argv, f"{PASSPHRASE}\nfor the bot\n")
    assert done.returncode == 0, done.stderr
    assert seen.read_bytes() == b"for the bot\n"  # the rest, exactly; no passphrase


def test_kraken_inner_whitespace_still_removed_with_a_warning(made: Path,
                                                              passfile: Path) -> None:
    secret = kraken_secret()
    code, _, err = cli([*ADD_SPOT, "--secret-stdin", "--passphrase-file", str(passfile)],
                       f"{secret[:30]} {secret[30:]}\r\n")
    assert code == 0, err
    assert "removed 1 whitespace character" in err
    with Vault.open(made, PASSPHRASE) as v:
        assert v.get("kf").api_secret.reveal() == secret


def test_secret_with_nul_or_beyond_the_record_limit_refused_at_add(made: Path,
                                                                   passfile: Path) -> None:
    from botvault.errors import InvalidInputError

    with Vault.open(made, PASSPHRASE) as v:
        with pytest.raises(InvalidInputError, match="NUL"):
            v.add("n", exchange="generic", api_key="K", api_secret="a\x00b", general="none",
                  withdrawal="none")
        with pytest.raises(InvalidInputError, match=r"the secret is 40000 bytes; at most"):
            v.add("n", exchange="generic", api_key="K", api_secret="s" * 40_000,
                  general="none", withdrawal="none")
    code, _, err = cli(["add", "big", "--exchange", "generic", "--api-key", "K", "--general",
                        "none", "--withdrawal", "none", "--secret-stdin", "--passphrase-file",
                        str(passfile)], "s" * 40_000)
    assert code == 2
    assert "40000 bytes" in err and "impossible length" not in err
    assert names(made) == []


# -- 2. every argument checked before the first prompt or read ---------------------------


def test_existing_name_refused_before_the_secret_is_read(made: Path, passfile: Path) -> None:
    with Vault.open(made, PASSPHRASE) as v:
        v.add("kf", exchange="kraken-spot", api_key="OTHERKEY", api_secret=kraken_secret(),
              general="none", withdrawal="none")
    # An invalid secret on stdin: exit 4, not 2, shows the name was checked first.
    code, _, err = cli([*ADD_SPOT, "--secret-stdin", "--passphrase-file", str(passfile)],
                       "not a secret\n")
    assert code == 4
    assert "exists already" in err


@pytest.mark.parametrize(("args", "names_in_error"), [
    (["add", "x", "--exchange", "kraken"], ["kraken-futures", "kraken-spot", "generic"]),
    (["add", "x", "--exchange", "generic", "--general", "admin"], ["read-only", "full"]),
    (["add", "x", "--exchange", "generic", "--withdrawal", "some"], ["none", "full"]),
    (["add", "x", "--exchange", "generic", "--nonce-unit", "ns"], ["ms", "us", "10ns"]),
    (["import", "f", "--format", "yaml"], ["env", "ccxt", "freqtrade", "botvault"]),
    (["env", "x", "--format", "xml"], ["sh", "dotenv", "json"]),
    (["edit", "x", "--nonce-unit", "s"], ["ms", "us", "10ns"]),
])
def test_choices_are_refused_before_any_prompt_naming_the_values(
        made: Path, args: list[str], names_in_error: list[str]) -> None:
    for code, err in both(args, ""):
        assert code == 2
        assert err.startswith("botvault: error: Invalid value for")
        assert all(repr(n) in err for n in names_in_error), err
        assert "passphrase" not in err.lower()


def test_choices_are_the_librarys_values() -> None:
    from botvault.cli import choices
    from botvault.entries import NONCE_UNITS
    from botvault.exchanges.validation import EXCHANGES
    from botvault.handover import FORMATS

    assert tuple(e.value for e in choices.Exchange) == EXCHANGES
    assert tuple(e.value for e in choices.NonceUnit) == NONCE_UNITS
    assert tuple(e.value for e in choices.EnvFormat) == tuple(FORMATS)
    assert {e.value for e in choices.ImportFormat} == {"env", "ccxt", "freqtrade", "botvault"}


def test_help_lists_the_choices() -> None:
    code, out, _ = cli(["add", "--help"])
    assert code == 0
    assert "[kraken-futures|kraken-spot|generic]" in out.replace("<", "[").replace(">", "]")
    assert "none|read-only|full" in out and "ms|us|10ns" in out
    assert "env|ccxt|freqtrade|botvault" in cli(["import", "--help"])[1]


@pytest.mark.parametrize("args", [
    ["add", "kf", "--exchange", "kraken-spot", "--api-key", "has spaces in it"],
    ["add", "Bad Name", "--exchange", "generic"],
    ["add", "kf", "--exchange", "generic", "--note", "n" * 5000],
    ["edit", "kf", "--env-key", "PATH"],
    ["edit", "BAD NAME", "--note", "x"],
    ["rm", "kf"],  # no --yes and no terminal
    ["rename", "kf", "Bad Name"],
])
def test_bad_arguments_refused_before_the_passphrase(made: Path, args: list[str]) -> None:
    # No passphrase source at all: reaching the passphrase would be exit 5.
    code, _, err = cli(args)
    assert code == 2, err


def test_missing_api_key_without_a_terminal_is_refused_before_reading(made: Path,
                                                                      passfile: Path) -> None:
    code, _, err = cli(["add", "kf", "--exchange", "kraken-spot", "--general", "none",
                        "--withdrawal", "none", "--secret-stdin", "--passphrase-file",
                        str(passfile)], "SOMEKEY\n" + kraken_secret() + "\n")
    assert code == 2
    assert "missing --api-key" in err
    assert names(made) == []


# -- 4. passphrase sources -------------------------------------------------------------------


@pytest.mark.parametrize(("content", "mode", "code", "message"), [
    (f"{PASSPHRASE}\r\n", 0o600, 0, ""),
    (f"{PASSPHRASE}", 0o600, 0, ""),
    (f"{PASSPHRASE}\n\n", 0o600, 2, "more than one line"),
    (f"{PASSPHRASE}\nsecond line\n", 0o600, 2, "more than one line"),
    (PASSPHRASE.encode() + b"\xff\n", 0o600, 2, "not valid UTF-8"),
    ("\n", 0o600, 2, "is empty"),
    (f"{PASSPHRASE}\n", 0o640, 7, "readable by other users"),
    (f"{PASSPHRASE}\n", 0o620, 7, "writable by other users"),
    (f"{PASSPHRASE}\n", 0o602, 7, "writable by other users"),
])
def test_passphrase_file_rules(made: Path, tmp_path: Path, content: str | bytes, mode: int,
                               code: int, message: str) -> None:
    pf = private(tmp_path / "pf", content, mode)
    for got, err in both(["list", "--passphrase-file", str(pf)]):
        assert got == code, err
        assert message in err
        assert "unexpected error" not in err and PASSPHRASE not in err


def test_passphrase_file_with_a_trailing_empty_line_cannot_set_a_vault(tmp_path: Path,
                                                                       vault_path: Path) -> None:
    pf = private(tmp_path / "pf", "a fine long passphrase here\n\n")
    code, _, err = cli(["init", *FLOOR_CLI_ARGS, "--passphrase-file", str(pf)])
    assert code == 2
    assert "more than one line" in err
    assert not vault_path.exists()


def test_passphrase_command_timeout_failure_and_bad_output(made: Path, tmp_path: Path) -> None:
    sleep, false, printf = (shutil.which(c) for c in ("sleep", "false", "printf"))
    env = {**os.environ, "BOTVAULT_PASSPHRASE_TIMEOUT": "0.5"}
    done = proc(["list", "--passphrase-command", f"{sleep} 30"], env=env)
    assert done.returncode not in (0, 1)
    assert b"did not finish within 0.5 s" in done.stderr and b"sleep 30" in done.stderr
    code, _, err = cli(["list", "--passphrase-command", f"{sleep} 30"], env={
        "BOTVAULT_PASSPHRASE_TIMEOUT": "0.3"})
    assert code not in (0, 1)
    code, _, err = cli(["list", "--passphrase-command", str(false)])
    assert code not in (0, 1) and "exited with status 1" in err
    script = private(tmp_path / "helper.sh", "#!/bin/sh\nprintf '\\377hidden-output\\n'\n",
                     0o700)
    code, _, err = cli(["list", "--passphrase-command", str(script)])
    assert code == 2 and "not UTF-8" in err and "unexpected" not in err
    assert str(script) in err and "hidden-output" not in err  # the command, never its output
    code, _, err = cli(["list", "--passphrase-command", f"{printf} ''"])
    assert code == 2 and "printed no passphrase" in err
    code, _, err = cli(["list", "--passphrase-command", "true"],
                       env={"BOTVAULT_PASSPHRASE_TIMEOUT": "soon"})
    assert code == 2 and "BOTVAULT_PASSPHRASE_TIMEOUT" in err
    assert cli(["list", "--passphrase-command", f"{printf} '%s\\n' '{PASSPHRASE}'"])[0] == 0


def test_every_passphrase_file_flag_follows_the_same_rules(made: Path, tmp_path: Path,
                                                           passfile: Path) -> None:
    loose = private(tmp_path / "loose", "an export passphrase long\n", 0o620)
    two = private(tmp_path / "two", "an export passphrase long\nmore\n")
    for flag_file, code in ((loose, 7), (two, 2)):
        got, _, err = cli(["export", str(tmp_path / "out.bv"), "--export-passphrase-file",
                           str(flag_file), "--passphrase-file", str(passfile)])
        assert got == code, err
        assert not (tmp_path / "out.bv").exists()
    before = made.read_bytes()
    for flag_file, code in ((loose, 7), (two, 2)):
        got, _, _ = cli(["passwd", "--new-passphrase-file", str(flag_file),
                         "--passphrase-file", str(passfile)])
        assert got == code
    assert made.read_bytes() == before
    good = private(tmp_path / "good", "an export passphrase long\n")
    assert cli(["export", str(tmp_path / "out.bv"), "--export-passphrase-file", str(good),
                "--passphrase-file", str(passfile)])[0] == 0
    for flag_file, code in ((loose, 7), (two, 2)):
        got, _, _ = cli(["import", str(tmp_path / "out.bv"), "--format", "botvault",
                         "--import-passphrase-file", str(flag_file), "--passphrase-file",
                         str(passfile)])
        assert got == code


# -- 5. all or nothing -----------------------------------------------------------------------


def test_import_env_with_a_bad_second_key_saves_nothing_and_reruns(made: Path, tmp_path: Path,
                                                                   passfile: Path) -> None:
    good, bad = kraken_secret(), "bm90IGEgcmVhbCBzZWNyZXQ="
    env_file = private(tmp_path / ".env", f"KRAKEN_API_KEY=KEYONE\nKRAKEN_API_SECRET={good}\n"
                       f"KRAKEN_FUTURES_API_KEY=KEYTWO\nKRAKEN_FUTURES_API_SECRET={bad}\n")
    args = ["import", str(env_file), "--format", "env",
            "--name", "bot", "--general", "read-only", "--withdrawal", "none",
            "--passphrase-file", str(passfile)]
    before = made.read_bytes()
    code, out, err = cli(args)
    assert (code, out) == (2, "")
    assert "the secret decodes to 17 bytes" in err and "nothing was imported" in err
    assert made.read_bytes() == before
    code, _, err = cli(args)  # a second run fails the same way, not with "exists" (exit 4)
    assert code == 2, err
    private(env_file, f"KRAKEN_API_KEY=KEYONE\nKRAKEN_API_SECRET={good}\n"
            f"KRAKEN_FUTURES_API_KEY=KEYTWO\nKRAKEN_FUTURES_API_SECRET={kraken_secret()}\n")
    done = proc(args)
    assert done.returncode == 0, done.stderr
    assert names(made) == ["bot", "bot-2"]


def test_import_reports_every_problem(made: Path, tmp_path: Path, passfile: Path) -> None:
    src = private(tmp_path / "keys.json", json.dumps({
        "kraken": {"apiKey": "A1", "secret": "short"},
        "krakenfutures": {"apiKey": "A2", "secret": "not!base64"}}))
    code, _, err = cli(["import", str(src), "--format", "ccxt", "--general", "none",
                        "--withdrawal", "none", "--passphrase-file", str(passfile)])
    assert code == 2
    assert "2 problems" in err and err.count("the secret") == 2
    assert names(made) == []


def test_import_json_with_a_huge_number_is_a_clean_exit_2(made: Path, tmp_path: Path,
                                                          passfile: Path) -> None:
    src = private(tmp_path / "keys.json",
                  '{"apiKey": "K", "secret": "S", "n": ' + "9" * 10_000 + "}")
    for code, err in both(["import", str(src), "--format", "ccxt", "--general", "none",
                           "--withdrawal", "none", "--passphrase-file", str(passfile)]):
        assert code == 2, err
        assert "too long to read" in err and "unexpected" not in err


def test_export_leaves_only_its_file(made: Path, tmp_path: Path, passfile: Path) -> None:
    with Vault.open(made, PASSPHRASE) as v:
        v.add("g", exchange="generic", api_key="K", api_secret="s", general="none",
              withdrawal="none")
    good = private(tmp_path / "ep", "an export passphrase long\n")
    out_dir = tmp_path / "usb"
    done = proc(["export", str(out_dir / "backup.bv"), "--export-passphrase-file", str(good),
                 "--passphrase-file", str(passfile)])
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out_dir)) == ["backup.bv"]
    # Never overwritten: a second export to the same file is refused before any passphrase.
    code, _, err = cli(["export", str(out_dir / "backup.bv")])
    assert code == 4 and "never overwrites" in err


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"),
                    reason="mounting a small tmpfs needs root")
def test_export_on_a_full_disk_leaves_nothing_and_a_retry_works(made: Path, tmp_path: Path,
                                                                passfile: Path) -> None:
    with Vault.open(made, PASSPHRASE) as v:
        for i in range(8):
            v.add(f"g{i}", exchange="generic", api_key=f"K{i}", api_secret="s",
                  general="none", withdrawal="none", note="n" * 4000)
    mount, umount = shutil.which("mount") or "mount", shutil.which("umount") or "umount"
    mnt = tmp_path / "small"
    mnt.mkdir(mode=0o700)
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs",
                           str(mnt)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr!r}")
    try:
        good = private(tmp_path / "ep", "an export passphrase long\n")
        target = mnt / "backup.bv"
        args = ["export", str(target), "--export-passphrase-file", str(good),
                "--passphrase-file", str(passfile)]
        failed = proc(args)
        assert failed.returncode == 12, failed.stderr  # the OS refused (disk full)
        assert os.listdir(mnt) == []  # no empty file, no lock, no backups directory
        subprocess.run([mount, "-o", "remount,size=1m", str(mnt)], check=True)
        again = proc(args)
        assert again.returncode == 0, again.stderr
        assert os.listdir(mnt) == ["backup.bv"]
    finally:
        subprocess.run([umount, str(mnt)], check=False)


# -- 6. one key, one entry -------------------------------------------------------------------


def test_one_api_key_is_stored_once(made: Path, passfile: Path, tmp_path: Path) -> None:
    secret = kraken_secret()
    assert cli([*ADD_SPOT, "--secret-stdin", "--passphrase-file", str(passfile)],
               secret)[0] == 0
    again = ["add", "kf2", *ADD_SPOT[2:], "--secret-stdin", "--passphrase-file", str(passfile)]
    code, _, err = cli(again, kraken_secret())
    assert code == 4 and "'kf' already holds this kraken-spot api key" in err
    done = proc(again, kraken_secret())
    assert done.returncode == 4
    # The same key string on another exchange profile is another key.
    assert cli(["add", "gen", "--exchange", "generic", "--api-key", "SPOTKEY1", "--general",
                "none", "--withdrawal", "none", "--secret-stdin", "--passphrase-file",
                str(passfile)], "s")[0] == 0
    # rotate onto a key another entry holds, and import of a held key, are refused too.
    assert cli(["add", "other", "--exchange", "kraken-spot", "--api-key", "SPOTKEY2",
                "--general", "none", "--withdrawal", "none", "--secret-stdin",
                "--passphrase-file", str(passfile)], kraken_secret())[0] == 0
    code, _, err = cli(["rotate", "other", "--api-key", "SPOTKEY1", "--secret-stdin",
                        "--passphrase-file", str(passfile)], kraken_secret())
    assert code == 4 and "'kf'" in err
    src = private(tmp_path / ".env", f"KRAKEN_API_KEY=SPOTKEY1\nKRAKEN_API_SECRET="
                  f"{kraken_secret()}\n")
    code, _, err = cli(["import", str(src), "--format", "env", "--name", "dup", "--exchange",
                        "kraken-spot", "--general", "none", "--withdrawal", "none",
                        "--passphrase-file", str(passfile)])
    assert code == 4 and "'kf'" in err
    assert sorted(names(made)) == ["gen", "kf", "other"]


# -- 7. the product side ---------------------------------------------------------------------


@pytest.fixture
def products(made: Path) -> Path:
    with Vault.open(made, PASSPHRASE) as v:
        v.add("futures-bot", exchange="kraken-futures", api_key="FUTKEY", general="full",
              api_secret=kraken_secret(), withdrawal="none")
        v.add("spot-bot", exchange="kraken-spot", api_key="SPOTKEY", general="full",
              api_secret=kraken_secret(), withdrawal="none")
    return made


@pytest.mark.parametrize(("name", "path", "fits"), [
    ("futures-bot", "/0/private/Balance", "kraken-spot"),
    ("spot-bot", "/derivatives/api/v3/accounts", "kraken-futures"),
    ("spot-bot", "/api/v3/sendorder", "kraken-futures")])
def test_sign_refuses_a_path_of_the_other_product(products: Path, passfile: Path, name: str,
                                                  path: str, fits: str) -> None:
    code, out, err = cli(["sign", name, path, "--passphrase-file", str(passfile)])
    assert (code, out) == (2, "")
    assert f"sign it with a {fits} entry" in err
    with unlocked(passfile):
        done = proc(["sign", name, path])
        assert done.returncode == 2
        assert fits.encode() in done.stderr


def test_presets_fit_the_product(products: Path, passfile: Path, tmp_path: Path) -> None:
    code, out, err = cli(["env", "futures-bot", "--as", "kraken-sdk-spot", "--passphrase-file",
                          str(passfile)])
    assert (code, out) == (2, "")
    assert "for kraken-spot keys" in err and "--as kraken-sdk-futures" in err
    marker = tmp_path / "started"
    done = proc(["run", "futures-bot", "--as", "nautilus-kraken-spot", "--passphrase-file",
                 str(passfile), "--", "touch", str(marker)])
    assert done.returncode == 2 and not marker.exists()
    assert b"--as nautilus-kraken-futures" in done.stderr
    code, out, _ = cli(["env", "spot-bot", "--as", "kraken-sdk-spot", "--passphrase-file",
                        str(passfile)])
    assert code == 0 and "KRAKEN_SPOT_API_KEY" in out


# -- 8. help that teaches ----------------------------------------------------------------------


def test_help_shows_defaults_metavars_and_run_usage() -> None:
    out = cli(["unlock", "--help"])[1]
    assert "[default: (8h)]" in out and "[default: (1h)]" in out
    out = cli(["add", "--help"])[1]
    assert "Usage: root add [OPTIONS] NAME" in out or re.search(r"add \[OPTIONS\] NAME\b", out)
    assert "{NAME}" not in out and "<str>" not in out
    assert "--vault PATH" in out  # the shared options are the root's: named, and shown there
    assert "[default: the user data dir" in cli(["--help"])[1]
    out = cli(["run", "--help"])[1]
    assert re.search(r"run \[OPTIONS\] NAME\.\.\. -- CMD \[ARGS\.\.\.\]", out), out
    done = proc(["-V"])
    assert done.returncode == 0 and done.stdout.startswith(b"botvault ")


def test_did_you_mean_for_commands_and_entries(made: Path, passfile: Path) -> None:
    code, _, err = cli(["lst"])
    assert code == 2 and "Did you mean 'list'?" in err
    with Vault.open(made, PASSPHRASE) as v:
        v.add("futures-bot", exchange="generic", api_key="K", api_secret="s", general="none",
              withdrawal="none")
    code, _, err = cli(["show", "futures-bto", "--passphrase-file", str(passfile)])
    assert code == 4 and "did you mean 'futures-bot'?" in err


def test_shared_options_before_the_command(made: Path, passfile: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "vault.bv"
    Vault.create(other, PASSPHRASE, kdf=AGENT_KDF).close()
    with Vault.open(other, PASSPHRASE) as v:
        v.add("only-here", exchange="generic", api_key="K", api_secret="s", general="none",
              withdrawal="none")
    done = proc(["--vault", str(other), "--passphrase-file", str(passfile), "list"])
    assert done.returncode == 0, done.stderr
    assert b"only-here" in done.stdout
    code, out, _ = cli(["--vault", str(other), "list", "--passphrase-file", str(passfile)],
                       env={"BOTVAULT_PATH": str(made)})
    assert code == 0 and "only-here" in out  # the command line beats the environment


def test_man_page_from_the_help_text() -> None:
    done = proc(["man"])
    assert done.returncode == 0
    page = done.stdout.decode()
    assert page.startswith(".TH BOTVAULT 1")
    for command in ("init", "add", "unlock", "run", "import", "export", "restore"):
        assert f".SS {command}\n" in page
    assert "--secret-stdin" in page and "[default: (8h)]" in page


def test_sigint_while_waiting_exits_130_with_nothing_changed(made: Path,
                                                             tmp_path: Path) -> None:
    marker = tmp_path / "waiting"
    helper = private(tmp_path / "slow.sh", f"#!/bin/sh\ntouch {marker}\nexec sleep 30\n",
                     0o700)
    before = made.read_bytes()
    process = subprocess.Popen([*BOTVAULT, "edit", "x", "--note", "n", "--passphrase-command",
                                str(helper)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert eventually(marker.exists, timeout=20)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert b"botvault: error: interrupted" in err and b"Traceback" not in err
    assert made.read_bytes() == before


def test_man_page_installs(tmp_path: Path) -> None:
    target = tmp_path / "man" / "man1"
    code, out, err = cli(["man", "--install", str(target)])
    assert code == 0, err
    assert out == f"installed {target / 'botvault.1'}\n"
    assert (target / "botvault.1").read_text().startswith(".TH BOTVAULT 1")
    assert sorted(os.listdir(target)) == ["botvault.1"]


def _complete(words: str, env: dict[str, str]) -> list[str]:
    done = subprocess.run([*BOTVAULT], env={**env, "_BOTVAULT_COMPLETE": "complete_bash",
                                            "COMP_WORDS": words,
                                            "COMP_CWORD": str(len(words.split(" ")) - 1)},
                          capture_output=True, timeout=30, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().split()


def test_completion_of_choices_and_names_only_from_the_agent(products: Path,
                                                             passfile: Path) -> None:
    env = dict(os.environ)
    assert _complete("botvault add x --exchange ", env) == [
        "kraken-futures", "kraken-spot", "generic"]
    assert _complete("botvault show ", env) == []  # locked: nothing, and no prompt
    with unlocked(passfile):
        assert sorted(_complete("botvault show ", env)) == ["futures-bot", "spot-bot"]
        assert _complete("botvault show sp", env) == ["spot-bot"]


# -- 9. time and state shown plainly -----------------------------------------------------------


def test_format_moment_names_the_date_when_not_today() -> None:
    import time

    from botvault.cli.durations import format_moment

    now = time.mktime((2026, 12, 2, 10, 0, 0, 0, 0, -1))
    assert format_moment(now + 3600, now) == "11:00"
    assert format_moment(now + 7 * 86400 - 5 * 3600, now) == "2026-12-09 05:00"


def test_unlock_until_another_day_shows_the_date(made: Path, passfile: Path) -> None:
    with unlocked(passfile, ttl="2d") as said:
        assert re.search(rb"until \d{4}-\d\d-\d\d \d\d:\d\d \(idle", said), said
        status = proc(["status"]).stdout
        assert re.search(rb"locks in 47h\d\dm \(at \d{4}-\d\d-\d\d \d\d:\d\d;", status), status


def test_unlock_ttl_shorter_than_the_agent_says_unchanged(made: Path, passfile: Path) -> None:
    with unlocked(passfile):
        done = proc(["unlock", "--ttl", "5s"])
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(b"lock time unchanged")
        done = proc(["unlock", "--ttl", "2h"])
        assert done.stdout.startswith(b"extended")


def test_status_before_init_and_init_over_a_vault(vault_path: Path, tmp_path: Path) -> None:
    code, _, err = cli(["status"])
    assert code == 4 and f"no vault at {vault_path}" in err
    Vault.create(vault_path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY).close()
    pf = private(tmp_path / "pf", "another long passphrase ok\n")
    code, _, err = cli(["init", *FLOOR_CLI_ARGS, "--passphrase-file", str(pf)])
    assert code == 4
    assert "remove" not in err and "left as it is" in err


def test_restore_list_and_restore_say_what_changes(vault: Vault, vault_path: Path) -> None:
    for name in ("a", "b", "c"):
        vault.add(name, exchange="generic", api_key=f"K{name}", api_secret="s",
                  general="none", withdrawal="none")
    first = vault.generation - 2  # a only
    vault.remove("a")
    code, out, err = cli(["--passphrase-stdin", "restore", "--list"], f"{PASSPHRASE}\n")
    assert code == 0, err
    assert "SAVED" in out and re.search(rf"^{first}\s+1\s+\d\d:\d\d$", out, re.M), out
    code, out, err = cli(["--passphrase-stdin", "restore", str(first)], f"{PASSPHRASE}\n")
    assert code == 2 and "without --yes" in err  # no terminal, no --yes: nothing changed
    assert "brings back: a" in out and "drops: b, c" in out
    assert sorted(e.name for e in Vault.open(vault_path, PASSPHRASE).list()) == ["b", "c"]
    code, out, _ = cli(["--passphrase-stdin", "restore", str(first), "--yes"],
                       f"{PASSPHRASE}\n")
    assert code == 0
    assert [e.name for e in Vault.open(vault_path, PASSPHRASE).list()] == ["a"]


# -- 10. passphrases attackers try first -------------------------------------------------------


@pytest.mark.parametrize("weak", [
    "correct horse battery staple", "Correct-Horse-Battery-Staple!",
    "qwertyuiopasdfghjkl", "1qaz2wsx3edc4rfv", "abcabcabcabcabc", "passwordpassword",
    "the quick brown fox jumps over the lazy dog"])
def test_weak_passphrase_refused_without_a_terminal(vault_path: Path, tmp_path: Path,
                                                    weak: str) -> None:
    pf = private(tmp_path / "pf", weak + "\n")
    code, _, err = cli(["init", *FLOOR_CLI_ARGS, "--passphrase-file", str(pf)])
    assert code == 2, err
    assert "attackers try first" in err and "--allow-weak-passphrase" in err
    assert not vault_path.exists()
    done = proc(["init", *FLOOR_CLI_ARGS, "--passphrase-file", str(pf),
                 "--allow-weak-passphrase"])
    assert done.returncode == 0, done.stderr
    assert vault_path.exists()


def test_passwd_refuses_a_weak_new_passphrase_without_a_terminal(
        made: Path, vault_path: Path, tmp_path: Path, passfile: Path) -> None:
    weak = private(tmp_path / "new", "qwertyuiopasdfghjkl\n")
    before = vault_path.read_bytes()
    args = ["passwd", "--passphrase-file", str(passfile), "--new-passphrase-file", str(weak)]
    code, _, err = cli(args)
    assert code == 2, err
    assert "attackers try first" in err and "--allow-weak-passphrase" in err
    assert vault_path.read_bytes() == before
    done = proc([*args, "--allow-weak-passphrase"])
    assert done.returncode == 0, done.stderr
    assert Vault.open(vault_path, "qwertyuiopasdfghjkl").list() is not None


@pytest.mark.parametrize("fine", ["plaid nimbly unearth sprout cosmic yodel",
                                  "a long tty passphrase", "Tr0ub4dor&3 is not it either"])
def test_ordinary_passphrases_are_not_flagged(fine: str) -> None:
    from botvault.passphrase_policy import tried_first

    assert tried_first(fine) is None


def test_an_api_key_with_surrounding_whitespace_is_stored_trimmed_and_said_once(
        made: Path, vault_path: Path, passfile: Path) -> None:
    code, _, err = cli(["add", "padded", "--exchange", "generic", "--general", "none",
                          "--withdrawal", "none", "--api-key", "  KEY-PADDED\t",
                          "--secret-stdin", "--passphrase-file", str(passfile)], "s3cret\n")
    assert code == 0, err
    assert err.count("removed 3 whitespace characters from the start and end of the api "
                     "key") == 1
    assert Vault.open(vault_path, PASSPHRASE).get("padded").api_key == "KEY-PADDED"

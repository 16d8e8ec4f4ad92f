"""`botvault run` and `botvault env` as real processes, with the passphrase on stdin and
through a running agent.

`run` execs the command (it replaces botvault), so it is only ever tested in a subprocess.
Vaults use the KDF floor: neither the console script nor the agent has the test-only KDF.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import dotenv
import pytest

from botvault import Vault
from tests.agent_support import AGENT_KDF, PASSPHRASE, b64secret, eventually

_SCRIPT = Path(sys.executable).with_name("botvault")
BOTVAULT = [str(_SCRIPT)] if _SCRIPT.exists() else [
    sys.executable, "-c", "from botvault.cli.main import main; main()"]
# Prints what the bot would see: its pid and its whole environment.
SHOW_ENV = [sys.executable, "-c",
            "import json, os; print(json.dumps({'pid': os.getpid(), 'env': dict(os.environ)}))"]
BASH = shutil.which("bash") or "/bin/bash"
HIDDEN = ("BOTVAULT_PASSPHRASE_FILE", "BOTVAULT_PASSPHRASE_COMMAND")

# Generic secrets that break naive quoting. `{marker}` is a file that must never appear.
HOSTILE = {
    "h-quotes": "it's \"quoted\" ''' \\' '\\'' end'",
    "h-subst": "$(touch {marker}) `touch {marker}` ${{HOME}} $HOME $((6*7)) !! * ? ~ ;|&<>",
    "h-backslash": "back\\slash\\\\n \\t \\0 \\x41 \\u0041 tail\\",
    "h-lines": "line one\nline two\r\n\n  trailing newline\n",
    "h-unicode": "naïve ☃ 𝄞 日本語 \u200b\u00a0 é (e + combining acute: e\u0301)",
    "h-dash": "-n -e --help \t tab \x07 bell \x1b lone escape \x7f",
}


def hostile_secrets(marker: Path) -> dict[str, str]:
    return {name: value.format(marker=marker) for name, value in HOSTILE.items()}


def hostile_key(name: str) -> str:
    return f"key '{name}' \"q\" `b` \\ end"


def var_of(name: str) -> str:
    """The generic profile's secret variable for an entry name."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_API_SECRET"


def key_var_of(name: str) -> str:
    return var_of(name).removesuffix("_SECRET") + "_KEY"


class Env:
    """A vault made for these tests, the secrets in it, and how commands reach it."""

    def __init__(self, path: Path, secrets: dict[str, str], marker: Path,
                 use_agent: bool) -> None:
        self.path, self.secrets, self.marker, self.use_agent = path, secrets, marker, use_agent

    @property
    def stdin(self) -> str:
        """What botvault reads: nothing through the agent, else the passphrase."""
        return "" if self.use_agent else f"{PASSPHRASE}\n"

    @property
    def command(self) -> list[str]:
        """botvault, told to read the passphrase line from stdin when there is no agent."""
        return BOTVAULT if self.use_agent else [*BOTVAULT, "--passphrase-stdin"]

    def botvault(self, *args: str, env: Mapping[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.command, *args], input=self.stdin, env=env,
                              capture_output=True, text=True, timeout=30, check=False)

    def botvault_bytes(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """As `botvault`, with stdout as bytes (no newline translation)."""
        return subprocess.run([*self.command, *args], input=self.stdin.encode(),
                              capture_output=True, timeout=30, check=False)

    def run(self, *args: str, env: Mapping[str, str] | None = None
            ) -> tuple[int, int, str, str]:
        """`botvault run ARGS` in a subprocess: (its pid, exit code, stdout, stderr)."""
        process = subprocess.Popen([*self.command, "run", *args], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                   text=True)
        out, err = process.communicate(self.stdin, timeout=30)
        return process.pid, process.returncode, out, err


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


@contextlib.contextmanager
def agent_for(path: Path) -> Iterator[None]:
    """`botvault unlock` for the test, `botvault lock` (then SIGKILL if needed) after it."""
    done = subprocess.run([*BOTVAULT, "unlock", "--ttl", "60s", "--passphrase-stdin"],
                          input=f"{PASSPHRASE}\n",
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    found = re.search(r"agent pid (\d+)", done.stdout)
    assert found is not None
    pid = int(found.group(1))
    try:
        yield
    finally:
        subprocess.run([*BOTVAULT, "lock"], capture_output=True, timeout=10, check=False)
        if not eventually(lambda: not _alive(pid), timeout=3):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(params=["passphrase", "agent"])
def env(request: pytest.FixtureRequest, vault_path: Path, tmp_path: Path) -> Iterator[Env]:
    """A vault (KDF floor) with Kraken and generic keys, reached with the passphrase on stdin
    or through an agent (stdin then holds nothing)."""
    marker = tmp_path / "pwned"
    secrets: dict[str, str] = {}
    with Vault.create(vault_path, PASSPHRASE, kdf=AGENT_KDF) as v:
        for name, exchange, general, withdrawal in [
                ("fut", "kraken-futures", "full", "none"),
                ("spot", "kraken-spot", "read-only", "none"),
                ("spot2", "kraken-spot", "read-only", "none"),
                ("wd", "kraken-spot", "full", "full"),
                ("old", "kraken-spot", "read-only", "none"),
                ("my-bot.v2", "generic", "read-only", "none"),
                ("custom", "generic", "read-only", "none")]:
            secrets[name] = b64secret() if exchange != "generic" else f"{name} secret/+= x"
            v.add(name, exchange=exchange, api_key=f"PUB{name.upper()}", general=general,
                  withdrawal=withdrawal, api_secret=secrets[name])
        for name, secret in hostile_secrets(marker).items():
            secrets[name] = secret
            v.add(name, exchange="generic", api_key=hostile_key(name), api_secret=secret,
                  general="read-only", withdrawal="none")
        v.rotate("old", api_key="PUBOLDNEW", api_secret=b64secret())  # old.retired-1
    edited = subprocess.run([*BOTVAULT, "--passphrase-stdin", "edit", "custom", "--env-key",
                             "BOT_KEY",
                             "--env-secret", "BOT_SECRET"], input=f"{PASSPHRASE}\n",
                            capture_output=True, text=True, timeout=30, check=False)
    assert edited.returncode == 0, edited.stderr
    use_agent = request.param == "agent"
    with contextlib.ExitStack() as stack:
        if use_agent:
            stack.enter_context(agent_for(vault_path))
        yield Env(vault_path, secrets, marker, use_agent)


# -- run -------------------------------------------------------------------------------------


def test_run_adds_exactly_the_documented_variables_and_execs(env: Env, tmp_path: Path) -> None:
    passfile = tmp_path / "passfile"
    passfile.write_text(f"{PASSPHRASE}\n")
    passfile.chmod(0o600)
    base = {**os.environ, "LC_ALL": "C.UTF-8",  # no locale coercion adds LC_CTYPE anywhere
            "KRAKEN_API_KEY": "stale key from the parent",
            "BOTVAULT_PASSPHRASE_FILE": str(passfile),
            # Never run (the file comes first): a command that fails would show.
            "BOTVAULT_PASSPHRASE_COMMAND": "false"}
    expected_without = {k: v for k, v in base.items() if k not in HIDDEN}
    s = env.secrets
    cases: list[tuple[list[str], dict[str, str]]] = [
        (["fut"], {"KRAKEN_FUTURES_API_KEY": "PUBFUT", "KRAKEN_FUTURES_API_SECRET": s["fut"]}),
        (["spot"], {"KRAKEN_API_KEY": "PUBSPOT", "KRAKEN_API_SECRET": s["spot"]}),
        (["my-bot.v2"], {"MY_BOT_V2_API_KEY": "PUBMY-BOT.V2",
                         "MY_BOT_V2_API_SECRET": s["my-bot.v2"]}),
        (["fut", "--as", "freqtrade"], {"FREQTRADE__EXCHANGE__KEY": "PUBFUT",
                                        "FREQTRADE__EXCHANGE__SECRET": s["fut"]}),
        (["custom"], {"BOT_KEY": "PUBCUSTOM", "BOT_SECRET": s["custom"]}),
        (["fut", "spot"], {"KRAKEN_FUTURES_API_KEY": "PUBFUT",
                           "KRAKEN_FUTURES_API_SECRET": s["fut"],
                           "KRAKEN_API_KEY": "PUBSPOT", "KRAKEN_API_SECRET": s["spot"]}),
    ]
    for args, added in cases:
        pid, code, out, err = env.run(*args, "--", *SHOW_ENV, env=base)
        assert code == 0, (args, err)
        assert err == ""
        seen = json.loads(out)
        assert seen["pid"] == pid, args  # exec: the bot is the process botvault was
        child = seen["env"]
        assert child == {**expected_without, **added}, args
        for hidden in HIDDEN:
            assert hidden not in child


def test_run_passes_the_exit_code_and_reports_missing_commands(env: Env) -> None:
    _, code, _, err = env.run("fut", "--", "sh", "-c", "exit 7")
    assert (code, err) == (7, "")
    _, code, out, err = env.run("fut", "--", "no-such-command-for-botvault-tests")
    assert code == 127
    assert out == ""
    assert err.startswith("botvault: error: command not found")
    assert env.secrets["fut"] not in err
    _, code, _, err = env.run("fut", "--", str(env.marker.parent / "missing" / "bot"))
    assert code == 127


def test_run_refusals_start_nothing(env: Env) -> None:
    touch = ["--", "sh", "-c", f"touch {env.marker}"]
    refused = [
        (["fut", "--max-scope", "read-only"], 6, "more than --max-scope read-only"),
        (["wd"], 6, "can withdraw funds"),
        (["spot", "spot2"], 2, "KRAKEN_API_KEY"),
        (["old.retired-1"], 6, "retired"),
        (["nope"], 4, "no entry named 'nope'"),
    ]
    for args, code, message in refused:
        _, got, out, err = env.run(*args, *touch)
        assert got == code, (args, err)
        assert out == ""
        assert err.startswith("botvault: error: ") and message in err, err
        assert not env.marker.exists(), args
    # The same command does run when allowed, so the marker would have shown a start.
    _, code, _, err = env.run("spot", "--max-scope", "read-only", *touch)
    assert code == 0, err
    assert env.marker.exists()
    env.marker.unlink()
    _, code, out, err = env.run("wd", "--allow-withdrawal", "--", *SHOW_ENV)
    assert code == 0, err
    assert json.loads(out)["env"]["KRAKEN_API_SECRET"] == env.secrets["wd"]


# -- env -------------------------------------------------------------------------------------


def test_env_sh_round_trips_hostile_secrets_through_bash(env: Env, tmp_path: Path) -> None:
    names = list(HOSTILE)
    done = env.botvault_bytes("env", *names, "--format", "sh")
    assert done.returncode == 0, done.stderr
    script = tmp_path / "assignments.sh"
    script.write_bytes(done.stdout)
    bash_env = {**os.environ, "LC_ALL": "C.UTF-8"}
    for name in names:
        printed = subprocess.run(
            [BASH, "-c", f'eval "$(cat "$1")"; printf %s "${var_of(name)}"', "bash",
             str(script)], capture_output=True, env=bash_env, timeout=30, check=True)
        assert printed.stdout == env.secrets[name].encode(), name
        assert printed.stderr == b""
    key = subprocess.run([BASH, "-c", 'eval "$(cat "$1")"; printf %s "$H_SUBST_API_KEY"',
                          "bash", str(script)], capture_output=True, env=bash_env,
                         timeout=30, check=True)
    assert key.stdout == hostile_key("h-subst").encode()
    assert not env.marker.exists()  # nothing in a value was ever run


def test_env_json_and_dotenv(env: Env) -> None:
    names = list(HOSTILE)
    done = env.botvault("env", *names, "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    expected = {}
    for name in names:
        expected[key_var_of(name)] = hostile_key(name)
        expected[var_of(name)] = env.secrets[name]
    assert doc == expected
    assert list(doc) == list(expected)  # in the order the names were given

    # dotenv cannot represent '$' (readers expand it differently) nor a trailing \ or ".
    representable = ["h-quotes", "h-lines", "h-unicode", "h-dash"]
    done = env.botvault("env", "spot", "custom", *representable, "--format", "dotenv")
    assert done.returncode == 0, done.stderr
    parsed = dotenv.dotenv_values(stream=io.StringIO(done.stdout))
    assert parsed == {"KRAKEN_API_KEY": "PUBSPOT", "KRAKEN_API_SECRET": env.secrets["spot"],
                      "BOT_KEY": "PUBCUSTOM", "BOT_SECRET": env.secrets["custom"],
                      **{k: v for n in representable for k, v in (
                          (key_var_of(n), hostile_key(n)), (var_of(n), env.secrets[n]))}}
    done = env.botvault("env", "h-subst", "--format", "dotenv")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "--format sh or json" in done.stderr
    assert env.secrets["h-subst"] not in done.stderr


def test_env_applies_the_scope_checks(env: Env) -> None:
    for args, code in [(["fut", "--max-scope", "read-only"], 6), (["wd"], 6),
                       (["spot", "wd"], 6), (["old.retired-1"], 6), (["spot", "spot2"], 2)]:
        done = env.botvault("env", *args)
        assert done.returncode == code, (args, done.stderr)
        assert done.stdout == ""  # not even the keys that were allowed
        assert done.stderr.startswith("botvault: error: ")
    done = env.botvault("env", "wd", "--allow-withdrawal", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["KRAKEN_API_SECRET"] == env.secrets["wd"]
    done = env.botvault("env", "fut", "--max-scope", "full", "--format", "json")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("fmt", ["sh", "dotenv"])
def test_env_keeps_ansi_escape_sequences_in_secrets(vault_path: Path, tmp_path: Path,
                                                    fmt: str) -> None:
    """Regression: `env` printed through click.echo, which strips ANSI escape sequences
    when stdout is not a terminal (fixed in e654f51)."""
    secret = "red \x1b[31mRED\x1b[0m plain"
    with Vault.create(vault_path, PASSPHRASE, kdf=AGENT_KDF) as v:
        v.add("esc", exchange="generic", api_key="K", api_secret=secret, general="read-only",
              withdrawal="none")
    done = subprocess.run([*BOTVAULT, "--passphrase-stdin", "env", "esc", "--format", fmt],
                          input=f"{PASSPHRASE}\n".encode(), capture_output=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    if fmt == "dotenv":
        parsed = dotenv.dotenv_values(stream=io.StringIO(done.stdout.decode()))
        assert parsed["ESC_API_SECRET"] == secret
        return
    script = tmp_path / "assignments.sh"
    script.write_bytes(done.stdout)
    printed = subprocess.run([BASH, "-c", 'eval "$(cat "$1")"; printf %s "$ESC_API_SECRET"',
                              "bash", str(script)], capture_output=True, timeout=30, check=True)
    assert printed.stdout == secret.encode()

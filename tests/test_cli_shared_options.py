"""The shared options (--vault, --passphrase-*) belong to the root command alone; they work
before the command and after it, as documented, and never take a word that is the command's."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer

from botvault import Vault
from botvault.cli.main import _COMMANDS, app
from tests.agent_support import AGENT_KDF, make_vault, running
from tests.conftest import PASSPHRASE
from tests.gateway_stack import start_gateway, stop_gateway
from tests.helpers.files import private
from tests.test_cli_input import BOTVAULT, cli, proc

SHARED = {"--vault", "--passphrase-file", "--passphrase-command", "--passphrase-stdin"}


@pytest.fixture
def passfile(tmp_path: Path) -> Path:
    return private(tmp_path / "passphrase", f"{PASSPHRASE}\n")


def _vault(path: Path, *names: str) -> Path:
    with Vault.create(path, PASSPHRASE, kdf=AGENT_KDF) as v:
        for name in names:
            v.add(name, exchange="generic", api_key="K" + name, api_secret="s",
                  general="none", withdrawal="none")
    return path


def _every_command() -> list[Any]:
    root = typer.main.get_command(app)
    with root.make_context("botvault", [], resilient_parsing=True) as context:
        found = []
        for name in _COMMANDS:
            command = root.get_command(context, name)  # type: ignore[attr-defined]
            found += [command, *getattr(command, "commands", {}).values()]
        return found


def test_no_command_declares_a_shared_option() -> None:
    commands = _every_command()
    assert len(commands) >= len(_COMMANDS) + 5  # grant's subcommands are in
    for command in commands:
        declared = {opt for p in command.params for opt in p.opts}
        assert not declared & SHARED, command.name
        assert "--vault PATH" in (command.epilog or "") or command.name == "man"


def test_after_the_command_as_before_it(tmp_path: Path, passfile: Path) -> None:
    here = _vault(tmp_path / "here" / "v.bv", "only-here")
    _vault(tmp_path / "there" / "v.bv", "only-there")
    for args in (["list", "--vault", str(here), "--passphrase-file", str(passfile)],
                 ["list", f"--vault={here}", f"--passphrase-file={passfile}"],
                 ["--vault", str(here), "list", "--passphrase-file", str(passfile)],
                 # given twice, the later one counts, as for any option
                 ["--vault", str(tmp_path / "there" / "v.bv"), "list", "--vault", str(here),
                  "--passphrase-file", str(passfile)]):
        code, out, err = cli(args, env={"BOTVAULT_PATH": str(tmp_path / "there" / "v.bv")})
        assert code == 0, (args, err)
        assert "only-here" in out and "only-there" not in out, args
    done = proc(["grant", "list", "--json", "--vault", str(here), "--passphrase-file",
                 str(passfile)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"[]"


def test_environment_variables_still_name_the_vault_and_passphrase(tmp_path: Path,
                                                                   passfile: Path) -> None:
    here = _vault(tmp_path / "here" / "v.bv", "only-here")
    code, out, err = cli(["list"], env={"BOTVAULT_PATH": str(here),
                                        "BOTVAULT_PASSPHRASE_FILE": str(passfile)})
    assert code == 0, err
    assert "only-here" in out


def test_a_value_of_the_commands_own_option_is_never_taken(vault_path: Path,
                                                          passfile: Path) -> None:
    _vault(vault_path, "x")
    code, _, err = cli(["edit", "x", "--note", "--vault", "--passphrase-file", str(passfile)])
    assert code == 0, err
    with Vault.open(vault_path, PASSPHRASE) as v:
        assert v.get("x").note == "--vault"


def test_words_after_the_double_dash_are_the_bots(vault_path: Path, passfile: Path) -> None:
    _vault(vault_path, "x")
    done = subprocess.run([*BOTVAULT, "run", "x", "--passphrase-file", str(passfile), "--",
                           "printf", "%s\n", "--vault", "elsewhere", "--passphrase-stdin"],
                          capture_output=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"--vault\nelsewhere\n--passphrase-stdin\n"


def test_a_shared_option_without_its_value_is_a_usage_error() -> None:
    code, _, err = cli(["list", "--vault"])
    assert code == 2
    assert err == ("botvault: error: Option '--vault' requires an argument.\n"
                   "hint: see: botvault --help\n")


def test_the_gateway_serves_the_vault_named_before_the_command(tmp_path: Path) -> None:
    """`botvault --vault P gateway` used to serve BOTVAULT_PATH's vault (here: none)."""
    keys = make_vault(tmp_path / "elsewhere" / "v.bv")
    with running(keys):
        gateway, url = start_gateway(keys.path, "http://127.0.0.1:9")  # raises unless it listens
        stop_gateway(gateway)
    assert url.startswith("http://127.0.0.1:")

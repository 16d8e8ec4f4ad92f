"""Issue 16, point 7: commands fail on what argv and readable files already say before they
ask anything; prompts go to the terminal (or stderr), never to a piped stdout; one rule for
passphrases attackers try first (password123 and qwertyuiop alike)."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botvault import Vault
from botvault._testing import CHEAPEST_TEST_ONLY
from botvault.cli.main import app
from botvault.crypto import KdfParams
from botvault.passphrase_policy import tried_first
from tests.conftest import PASSPHRASE, kraken_secret

runner = CliRunner()


@pytest.fixture
def made(vault_path: Path) -> Path:
    Vault.create(vault_path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY).close()
    return vault_path


def test_import_without_a_name_fails_before_any_scope_is_asked(made: Path,
                                                               tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"KRAKEN_API_KEY=PUB\nKRAKEN_API_SECRET={kraken_secret()}\n")
    env.chmod(0o600)
    result = runner.invoke(app, ["import", str(env), "--format", "env"])
    assert result.exit_code == 2
    assert "pass --name NAME" in result.stderr
    assert "--general" not in result.stderr  # not the scope question: the name comes first


@pytest.mark.parametrize("weak", ["password123", "qwertyuiop", "Password123!", "letmein2024",
                                  "qwerty123456", "staple cobalt"])
def test_passphrases_attackers_try_first_are_judged_by_one_rule(weak: str) -> None:
    assert tried_first(weak) is not None


@pytest.mark.parametrize("good", ["k7#Qp2!xZr", "staple cobalt ferry", "a long tty passphrase",
                                  "export passphrase for the usb stick"])
def test_passphrases_not_tried_first(good: str) -> None:
    assert tried_first(good) is None


@pytest.mark.parametrize("weak", ["password123", "qwertyuiop"])
def test_export_refuses_both_alike_without_a_terminal(made: Path, tmp_path: Path,
                                                      weak: str) -> None:
    """Issue 16: password123 was accepted for an export with warnings, qwertyuiop refused."""
    pass_file, export_pass = tmp_path / "p", tmp_path / "e"
    for file, text in ((pass_file, PASSPHRASE), (export_pass, weak)):
        file.write_text(text + "\n")
        file.chmod(0o600)
    result = runner.invoke(app, ["export", str(tmp_path / "out.bvx"), "--passphrase-file",
                                 str(pass_file), "--export-passphrase-file", str(export_pass)])
    assert result.exit_code == 2
    assert "one attackers try first" in result.stderr
    assert not (tmp_path / "out.bvx").exists()


def test_passwd_reads_a_new_passphrase_file_before_asking_the_current(made: Path,
                                                                      tmp_path: Path) -> None:
    result = runner.invoke(app, ["passwd", "--new-passphrase-file", str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert "missing" in result.stderr
    assert "passphrase" not in result.stdout.lower()  # nothing was asked


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a Linux pty")
def test_a_prompt_never_goes_to_a_piped_stdout(vault_path: Path) -> None:
    """`botvault list | cat` at a terminal: the passphrase prompt is on the terminal, the
    pipe gets only the data (issue 16: `botvault doctor | tail -4` looked hung)."""
    Vault.create(vault_path, PASSPHRASE, kdf=KdfParams(19 * 1024, 2, 1)).close()
    controller, terminal = os.openpty()

    def controlling_terminal() -> None:  # the terminal becomes the child's /dev/tty
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, "BOTVAULT_PATH": str(vault_path), "TERM": "dumb"}
    child = subprocess.Popen(
        [sys.executable, "-m", "botvault", "list"], stdin=terminal, stderr=terminal,
        stdout=subprocess.PIPE, env=env, preexec_fn=controlling_terminal)  # noqa: PLW1509
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 30
    while b"Vault passphrase: " not in seen and time.monotonic() < deadline:
        if select.select([controller], [], [], 1)[0]:
            seen += os.read(controller, 4096)
    assert b"Vault passphrase: " in seen  # click's prompt, then getpass's space: echo is off
    os.write(controller, PASSPHRASE.encode() + b"\r")
    out, _ = child.communicate(timeout=30)
    os.close(controller)
    assert child.returncode == 0
    assert out.startswith(b"NAME")  # data only: no prompt in the pipe
    assert b"passphrase" not in out.lower()

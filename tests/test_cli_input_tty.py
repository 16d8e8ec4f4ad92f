"""Issue 9 at a real terminal (a pty): a wrong secret or api key is asked for again, Ctrl-C
exits 130 with nothing changed, a passphrase attackers try first needs a confirmation, and no
status line is left in front of a prompt."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import pytest

from botvault import Vault
from botvault._testing import FLOOR_CLI_ARGS
from botvault.crypto import KdfParams
from tests.test_cli_tty import Terminal

PASSPHRASE = "a long tty passphrase"
pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")),
                                reason="needs a POSIX pty")


@pytest.fixture
def env(vault_path: Path) -> dict[str, str]:
    return {**os.environ, "BOTVAULT_PATH": str(vault_path), "TERM": "dumb",
            "COLUMNS": "200"}


@pytest.fixture
def made(vault_path: Path) -> Path:
    Vault.create(vault_path, PASSPHRASE, kdf=KdfParams(19 * 1024, 2, 1)).close()
    return vault_path


def test_a_wrong_secret_and_api_key_are_asked_again(env: dict[str, str], made: Path) -> None:
    secret = base64.b64encode(os.urandom(64)).decode()
    term = Terminal(["add", "kf", "--exchange", "kraken-spot", "--general", "read-only",
                     "--withdrawal", "none"], env)
    term.hidden("Vault passphrase", PASSPHRASE)
    term.expect("API key (public)")
    term.send("has spaces in it")
    term.expect("characters a Kraken key never has")
    term.expect("try again (2 left)")
    term.expect("API key (public)")
    term.send("PUBLICKEY7")
    term.secret("bm90IGEgcmVhbCBzZWNyZXQ=")
    term.expect("the secret decodes to 17 bytes (24 base64 characters); Kraken issues 64-byte")
    term.expect("try again (2 left)")
    term.stored(secret)
    with Vault.open(made, PASSPHRASE) as v:
        assert v.get("kf").api_secret.reveal() == secret


def test_three_wrong_secrets_end_the_command_with_nothing_stored(env: dict[str, str],
                                                                 made: Path) -> None:
    term = Terminal(["add", "kf", "--exchange", "kraken-spot", "--general", "read-only",
                     "--withdrawal", "none", "--api-key", "PUBLICKEY7"], env)
    term.hidden("Vault passphrase", PASSPHRASE)
    for _ in range(3):
        term.secret("short")
    term.expect("botvault: error: the secret")
    assert term.wait() == 2
    assert len(Vault.open(made, PASSPHRASE)) == 0


def test_ctrl_c_at_a_prompt_exits_130_with_nothing_changed(env: dict[str, str],
                                                           made: Path) -> None:
    before = made.read_bytes()
    term = Terminal(["add", "kf", "--exchange", "generic", "--general", "none",
                     "--withdrawal", "none", "--api-key", "K"], env)
    term.hidden("Vault passphrase", PASSPHRASE)
    term.expect("API secret (private key, hidden): ")
    os.write(term.fd, b"\x03")
    term.expect("botvault: error: interrupted")
    assert term.wait() == 130
    assert made.read_bytes() == before


def test_weak_passphrase_needs_a_confirmation_at_a_terminal(env: dict[str, str],
                                                            vault_path: Path) -> None:
    weak = "correct horse battery staple"
    for answer in ("n", "y"):
        term = Terminal(["init", *FLOOR_CLI_ARGS], env)
        term.hidden("New vault passphrase", weak)
        term.hidden("Repeat for confirmation", weak)
        term.expect("attackers try first")
        term.expect("Use it anyway? [y/N]: ")
        term.send(answer)
        if answer == "n":
            assert term.wait() == 2
            assert not vault_path.exists()
    term.expect("created vault at")
    assert term.wait() == 0
    Vault.open(vault_path, weak).close()


def test_no_status_line_in_front_of_a_prompt(env: dict[str, str], made: Path,
                                             tmp_path: Path) -> None:
    target = tmp_path / "out.bv"
    term = Terminal(["export", str(target)], env)
    term.hidden("Vault passphrase", PASSPHRASE)
    term.expect("Export passphrase: ")
    shown = term.seen[:term.pos].decode(errors="replace")
    before_prompt = shown.rsplit("Vault passphrase", 1)[1]
    # Every status line written before the prompt was erased before it.
    assert before_prompt.count("unlocking…") == before_prompt.count("\r\x1b[K") >= 1
    assert before_prompt.rstrip().endswith("Export passphrase:")
    assert before_prompt.rsplit("\r\x1b[K", 1)[1].strip() == "Export passphrase:"
    term.send("an export passphrase long")
    term.hidden("Repeat for confirmation", "an export passphrase long")
    term.expect("exported 0 entries")
    assert term.wait() == 0


def test_no_status_line_in_front_of_a_prompt_asked_while_unlocking(env: dict[str, str],
                                                                   made: Path) -> None:
    """`passwd` asks for the new passphrase inside its `unlocking…` block: the line is
    erased before the prompt (before, it stood in front of "New passphrase:")."""
    term = Terminal(["passwd"], env)
    term.hidden("Vault passphrase", PASSPHRASE)
    term.expect("New passphrase: ")
    before_prompt = term.seen[:term.pos].decode(errors="replace").rsplit(
        "Vault passphrase", 1)[1]
    assert "unlocking…" in before_prompt
    assert before_prompt.rsplit("unlocking…", 1)[1].startswith("\r\x1b[K")
    assert before_prompt.rsplit("\r\x1b[K", 1)[1].strip() == "New passphrase:"
    term.send("another long tty passphrase")
    term.hidden("Repeat for confirmation", "another long tty passphrase")
    term.expect("passphrase changed")
    assert term.wait() == 0

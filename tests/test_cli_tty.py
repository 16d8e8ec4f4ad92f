"""The CLI at a real terminal (a pty): hidden prompts asked twice, the `unlocking…` line, and
no secret echoed. Everything else in the suite runs without a terminal."""

from __future__ import annotations

import base64
import os
import pty
import select
import shutil
import sys
import time
from pathlib import Path

import pytest

from botvault import Vault
from botvault._testing import FLOOR_CLI_ARGS

PASSPHRASE = "a long tty passphrase"
pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")),
                                reason="needs a POSIX pty")


class Terminal:
    """botvault running with a pty as its controlling terminal (stdin, stdout, stderr)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        exe = shutil.which("botvault") or ""
        argv = [exe, *args] if exe else [sys.executable, "-c",
                                         "from botvault.cli.main import main; main()", *args]
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec at once, nothing else runs here
            os.execve(argv[0], argv, env)  # noqa: S606 -- the pty child becomes botvault
        self.seen = b""
        self.pos = 0  # output before this was matched already

    def expect(self, text: str, timeout: float = 30.0) -> None:
        """Wait for `text` after what earlier calls matched, and move past it."""
        deadline = time.monotonic() + timeout
        while (at := self.seen.find(text.encode(), self.pos)) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{text!r} never came; the terminal showed {self.seen!r}")
        self.pos = at + len(text.encode())

    def hidden(self, prompt: str, line: str) -> None:
        """Answer a hidden prompt. click prints the prompt, then getpass turns echo off
        with TCSAFLUSH (dropping anything typed before) and prints one space: type after
        that space, as a person would after the cursor settles."""
        self.expect(prompt + ": ")
        self.send(line)

    def secret(self, secret: str) -> None:
        """Answer the api secret's hidden prompt (asked once: a paste is the same twice)."""
        self.hidden("API secret (private key, hidden)", secret)

    def stored(self, secret: str) -> None:
        """Give the secret; the command stores it and prints the fingerprint, never it."""
        self.secret(secret)
        self.expect("fingerprint:")
        assert self.wait() == 0
        assert secret[:16].encode() not in self.seen

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.seen += chunk
        return bool(chunk)

    def wait(self) -> int:
        while self._read(5.0):
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


@pytest.fixture
def env(vault_path: Path) -> dict[str, str]:
    return {**os.environ, "BOTVAULT_PATH": str(vault_path), "TERM": "dumb",
            "COLUMNS": "200"}


def test_init_asks_twice_hidden_and_retries_on_mismatch(env: dict[str, str],
                                                        vault_path: Path) -> None:
    term = Terminal(["init", *FLOOR_CLI_ARGS], env)
    term.hidden("New vault passphrase", PASSPHRASE)
    term.hidden("Repeat for confirmation", PASSPHRASE + " but different")
    term.expect("do not match")
    term.hidden("New vault passphrase", PASSPHRASE)
    term.hidden("Repeat for confirmation", PASSPHRASE)
    term.expect("created vault at")
    assert term.wait() == 0
    assert PASSPHRASE.encode() not in term.seen  # hidden input is never echoed
    Vault.open(vault_path, PASSPHRASE).close()


def _made(vault_path: Path) -> None:
    from botvault.crypto import KdfParams

    Vault.create(vault_path, PASSPHRASE, kdf=KdfParams(19 * 1024, 2, 1)).close()


def test_unlocking_status_shows_only_on_a_terminal(env: dict[str, str],
                                                   vault_path: Path) -> None:
    _made(vault_path)
    term = Terminal(["list"], env)
    term.hidden("Vault passphrase", PASSPHRASE)
    term.expect("NAME")
    assert term.wait() == 0
    assert "unlocking…".encode() in term.seen
    assert b"\r\x1b[K" in term.seen  # and the line is erased afterwards
    assert PASSPHRASE.encode() not in term.seen


def test_add_prompts_for_scopes_key_and_a_hidden_secret_once(env: dict[str, str],
                                                              vault_path: Path) -> None:
    _made(vault_path)
    secret = base64.b64encode(os.urandom(64)).decode()
    term = Terminal(["add", "kf", "--exchange", "kraken-futures"], env)
    term.expect("General API scope")
    term.send("read-only")
    term.expect("Withdrawal API scope")
    term.send("none")
    term.hidden("Vault passphrase", PASSPHRASE)
    term.expect("API key (public)")
    term.send("PUBLICKEY7")
    term.stored(secret)
    entry = Vault.open(vault_path, PASSPHRASE).get("kf")
    assert (entry.api_key, entry.general.value) == ("PUBLICKEY7", "read-only")
    assert entry.api_secret.reveal() == secret

"""Where passphrases and secrets come from. Never argv, never a plain environment variable.

Order: --passphrase-file, --passphrase-command, a hidden prompt on the terminal, one line of
standard input when it is not a terminal. (The running agent comes first where it can serve;
that is decided by the caller.) When several values come from standard input they are read
one line each, in the order the command needs them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from botvault.errors import InvalidInputError, LockedError

__all__ = ["Sources", "interactive", "read_new_passphrase", "read_passphrase", "read_secret",
           "stdin_line"]


@dataclass(frozen=True)
class Sources:
    file: Path | None = None
    command: str | None = None

    def can_ask(self) -> bool:
        return self.file is not None or self.command is not None or interactive() or \
            not _stdin_closed()


def interactive() -> bool:
    return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()


def _stdin_closed() -> bool:
    return sys.stdin is None or sys.stdin.closed


def _strip_newline(value: str) -> str:
    return value[:-1] if value.endswith("\n") else value


def stdin_line(what: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise LockedError(f"no {what}: standard input is empty",
                          hint="pass --passphrase-file or --passphrase-command, or run "
                               "`botvault unlock` first")
    return _strip_newline(line).removesuffix("\r")


def read_file(path: Path) -> str:
    """A passphrase file: a private file of yours (botvault.private), as ssh treats a key."""
    from botvault.private import open_private_file

    try:
        fd = open_private_file(path, os.O_RDONLY, "passphrase file")
    except FileNotFoundError:
        raise InvalidInputError(f"passphrase file {path} does not exist") from None
    with os.fdopen(fd, "rb") as f:
        raw = f.read()
    text = _strip_newline(raw.decode("utf-8")).removesuffix("\r")
    if not text:
        raise InvalidInputError(f"passphrase file {path} is empty")
    return text


def run_command(command: str) -> str:
    """First line of a helper's stdout (systemd-ask-password, a keyring CLI, pass, ...)."""
    import shlex
    import subprocess

    try:
        done = subprocess.run(shlex.split(command), stdout=subprocess.PIPE, check=False)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"could not run the passphrase command: {exc}") from None
    if done.returncode != 0:
        raise InvalidInputError(f"the passphrase command exited with status {done.returncode}")
    text = done.stdout.decode("utf-8").splitlines()
    if not text or not text[0]:
        raise InvalidInputError("the passphrase command printed nothing")
    return text[0]


def read_passphrase(sources: Sources, prompt: str = "Vault passphrase") -> str:
    if sources.file is not None:
        return read_file(sources.file)
    if sources.command is not None:
        return run_command(sources.command)
    if interactive():
        return str(typer.prompt(prompt, hide_input=True))
    if _stdin_closed():
        raise LockedError("the vault is locked and there is no way to ask for a passphrase",
                          hint="run `botvault unlock`, or pass --passphrase-file")
    return stdin_line("passphrase")


def read_new_passphrase(file: Path | None, prompt: str = "New passphrase") -> str:
    """A passphrase being set: from a file, asked twice on a terminal, or a stdin line."""
    if file is not None:
        return read_file(file)
    if interactive():
        return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))
    return stdin_line("new passphrase")


def read_secret(from_stdin: bool) -> str:
    """The api secret: a hidden prompt asked twice, or one line of stdin. Never argv."""
    if from_stdin or not interactive():
        return stdin_line("secret")
    return str(typer.prompt("API secret (private key, hidden)", hide_input=True,
                            confirmation_prompt=True))

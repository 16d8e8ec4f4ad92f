"""Where passphrases and secrets come from on the command line. Never argv, never a plain
environment variable. The rules for each source live in `botvault.passphrase_source` and
`botvault.secret_input`; this module only picks the source.

Standard input has one meaning per command: the passphrase comes from it only with an explicit
`--passphrase-stdin` (one line), a secret only with `--secret-stdin` (all of it), and never
both. Without either, standard input is not read: values come from the terminal, or the
command says which flag to pass. Order for the vault passphrase: --passphrase-file,
--passphrase-command, --passphrase-stdin, a hidden prompt on the terminal. (The running agent
comes first where it can serve, unless --passphrase-stdin is given; the caller decides.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import typer

from botvault.errors import InvalidInputError, LockedError

__all__ = ["Sources", "ask_until_valid", "check_new_passphrase_source", "interactive",
           "read_file", "read_new_passphrase", "read_passphrase", "read_secret",
           "refuse_two_stdin_readers", "run_command", "stdin_line"]

T = TypeVar("T")
MAX_TRIES = 3
_NO_SOURCE_HINT = ("pass --passphrase-file FILE, --passphrase-command CMD or "
                   "--passphrase-stdin, or run `botvault unlock` first")


@dataclass(frozen=True)
class Sources:
    file: Path | None = None
    command: str | None = None
    stdin: bool = False

    def can_ask(self) -> bool:
        """Whether a passphrase can be had without the agent (so an unusable agent is a
        warning, not an error): a file, a command, --passphrase-stdin, or a terminal."""
        return self.file is not None or self.command is not None or self.stdin or interactive()


def interactive() -> bool:
    return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()


def _stdin_bytes() -> BinaryIO:
    stream = sys.stdin
    if stream is None or stream.closed:
        raise LockedError("standard input is closed", hint=_NO_SOURCE_HINT)
    return stream.buffer


def read_file(path: Path, what: str = "passphrase file") -> str:
    from botvault.passphrase_source import read_passphrase_file

    return read_passphrase_file(path, what)


def run_command(command: str) -> str:
    from botvault.passphrase_source import run_passphrase_command

    return run_passphrase_command(command)


def _prompt_hidden(prompt: str, *, confirm: bool = False) -> str:
    from .output import before_prompt

    while True:
        before_prompt()
        value = str(typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm,
                                  err=True))
        if value:
            return value
        typer.echo("botvault: error: the passphrase is empty", err=True)


def read_passphrase(sources: Sources, prompt: str = "Vault passphrase") -> str:
    if sources.file is not None:
        return read_file(sources.file)
    if sources.command is not None:
        return run_command(sources.command)
    if sources.stdin:
        from botvault.passphrase_source import passphrase_from_stdin

        return passphrase_from_stdin(_stdin_bytes())
    if interactive():
        return _prompt_hidden(prompt)
    raise LockedError("the vault is locked and there is no terminal to ask for the passphrase "
                      "(standard input is read only with --passphrase-stdin)",
                      hint=_NO_SOURCE_HINT)


def read_new_passphrase(file: Path | None, prompt: str = "New passphrase", *,
                        flag: str = "--new-passphrase-file", stdin: bool = False) -> str:
    """A passphrase being set: from a file, asked twice on a terminal, or (with
    --passphrase-stdin) the next line of standard input."""
    if file is not None:
        return read_file(file, f"{prompt.lower()} file")
    if interactive():
        return _prompt_hidden(prompt, confirm=True)
    if stdin:
        from botvault.passphrase_source import passphrase_from_stdin

        return passphrase_from_stdin(_stdin_bytes(), prompt.lower())
    check_new_passphrase_source(file, prompt, flag=flag, stdin=stdin)
    raise AssertionError("unreachable")  # pragma: no cover


def check_new_passphrase_source(file: Path | None, prompt: str, *, flag: str,
                                stdin: bool = False) -> None:
    """Refused when `read_new_passphrase` would have nowhere to read from: callers check
    it before anything else is asked for."""
    if file is None and not stdin and not interactive():
        raise InvalidInputError(f"no terminal to ask for the {prompt.lower()}",
                                hint=f"pass {flag} FILE")


def stdin_line(what: str) -> str:
    """One line of standard input (newline removed, same rules as a passphrase file). Call
    it only behind an explicit `--...-stdin` flag: stdin is never read without one."""
    from botvault.passphrase_source import passphrase_from_stdin

    return passphrase_from_stdin(_stdin_bytes(), what)


def refuse_two_stdin_readers(sources: Sources, *, secret_stdin: bool) -> None:
    """Passphrase and secret cannot share standard input: refused before anything is read."""
    if secret_stdin and sources.stdin:
        raise InvalidInputError(
            "--secret-stdin and --passphrase-stdin both want standard input",
            hint="give the passphrase with --passphrase-file or --passphrase-command, or run "
                 "`botvault unlock` first")


def read_secret(from_stdin: bool, check: Callable[[str], object] | None = None,
                prompt: str = "API secret (private key, hidden)") -> str:
    """The api secret: all of standard input with --secret-stdin, else a hidden prompt that
    takes a whole paste, however many lines it arrives as (botvault.secret_paste), asked again
    (up to 3 times) while `check` refuses it. Never argv.

    Asked once, not twice: a paste is the same both times, so a second entry proves nothing,
    and it was the second prompt that the rest of a wrapped paste used to feed. The check is
    the exchange's shape rule (the exact length Kraken issues) and the fingerprint printed
    afterwards."""
    if from_stdin:
        from botvault.secret_input import secret_from_stream

        return secret_from_stream(_stdin_bytes())
    if not interactive():
        raise InvalidInputError("no terminal to ask for the secret",
                                hint="pipe it in with --secret-stdin (all of standard input "
                                     "is the secret)")
    from .output import before_prompt

    def ask() -> str:
        from botvault.secret_paste import read_hidden_paste

        before_prompt()
        return read_hidden_paste(f"{prompt}: ")

    return ask_until_valid(ask, check)


def ask_until_valid(ask: Callable[[], str], check: Callable[[str], object] | None) -> str:
    """Ask again while `check` raises InvalidInputError, saying what was wrong (3 tries)."""
    for attempt in range(1, MAX_TRIES + 1):
        value = ask()
        if check is None:
            return value
        try:
            check(value)
        except InvalidInputError as exc:
            if attempt == MAX_TRIES:
                raise
            typer.echo(f"botvault: error: {exc.message}", err=True)
            if exc.hint:
                typer.echo(f"hint: {exc.hint}", err=True)
            typer.echo(f"try again ({MAX_TRIES - attempt} left)", err=True)
            continue
        return value
    raise AssertionError("unreachable")  # pragma: no cover

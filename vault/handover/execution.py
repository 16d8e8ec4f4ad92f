"""Running the bot: the child environment and the exec behind `botvault run`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from ..errors import InvalidInputError
from .values import check_assignments

__all__ = ["CommandNotExecutableError", "CommandNotFoundError", "child_env", "exec_command"]


def child_env(base: Mapping[str, str], assignments: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The environment for `run`: `base` plus exactly `assignments`.

    Nothing else is added or removed. A variable in `base` with the same name as an
    assignment is replaced by the assignment. botvault's own variables (BOTVAULT_*, such
    as BOTVAULT_PASSPHRASE_FILE) are passed through unchanged like any other: strip them
    from `base` first if the child should not see them.
    """
    check_assignments(assignments)
    env = dict(base)
    env.update(assignments)
    return env


class CommandNotFoundError(InvalidInputError):
    """`run` could not find the command (exit 127, as POSIX `env` and shells use)."""

    exit_code = 127


class CommandNotExecutableError(InvalidInputError):
    """`run` found the command but could not execute it (exit 126, as POSIX `env` uses)."""

    exit_code = 126


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process with `argv` run under exactly `env`; returns only by raising.

    The pid stays the same, so signals, exit codes and supervisors (systemd, docker) see the
    bot itself. A command without a slash is looked up in `env`'s PATH. A missing command
    raises CommandNotFoundError (exit code 127), one that exists but cannot be executed
    (permissions, not an executable, a script without `#!`) CommandNotExecutableError
    (126); both are InvalidInputError and name only argv[0].
    """
    if not argv:
        raise InvalidInputError("no command to run", hint="put the command after --")
    _check_exec_args(argv, env)
    _flush_std_streams()
    command = argv[0]
    try:
        # S606: running the user's own command is what `run` is for; argv is a list, no shell.
        os.execvpe(command, list(argv), dict(env))  # noqa: S606
    except (FileNotFoundError, NotADirectoryError):
        raise CommandNotFoundError(f"command not found: {command!r}") from None
    except OSError as exc:
        raise CommandNotExecutableError(
            f"cannot execute {command!r}: {exc.strerror or type(exc).__name__}",
        ) from None


def _check_exec_args(argv: Sequence[str], env: Mapping[str, str]) -> None:
    if any("\x00" in arg for arg in argv):
        raise InvalidInputError("a command argument contains a NUL byte")
    for var, value in env.items():
        if not var or "=" in var or "\x00" in var:
            raise InvalidInputError(f"invalid environment variable name {var!r}")
        # Only NUL is checked here: values inherited from os.environ may hold undecodable
        # bytes as surrogate escapes, which execve passes on unchanged.
        if "\x00" in value:
            raise InvalidInputError(
                f"the value of {var} contains a NUL byte; environment variables cannot hold NUL",
            )


def _flush_std_streams() -> None:
    # exec discards Python's buffers: without this, anything printed before `run` execs
    # (a warning, a notice) would be lost whenever stdout is a pipe or a file.
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            # A closed or broken stream must not stop the bot from starting.
            with contextlib.suppress(OSError, ValueError):
                stream.flush()

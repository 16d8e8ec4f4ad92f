"""How the command line talks: data to stdout, diagnostics to stderr, exit codes.

Errors print as one `botvault: error: ...` line plus a `hint: ...` line where one helps.
No traceback for an expected error; an unexpected one prints its type only (its message or
locals could hold a secret) and exits 1.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import typer

from botvault.errors import VaultError

__all__ = ["error", "json_out", "raw_out", "status", "table", "warn"]


def error(message: str, hint: str | None = None) -> None:
    typer.echo(f"botvault: error: {message}", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)


def warn(message: str) -> None:
    typer.echo(f"botvault: warning: {message}", err=True)


def info(message: str) -> None:
    typer.echo(message, err=True)


def _show_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    warn(str(message))


@contextlib.contextmanager
def reporting() -> Iterator[None]:
    """Turn library warnings into `botvault: warning:` lines and errors into exit codes."""
    with warnings.catch_warnings():
        # The library's warnings are UserWarnings meant for the user; the interpreter's own
        # (ResourceWarning, DeprecationWarning) are noise on a command line.
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = _show_warning
        try:
            yield
        except VaultError as exc:
            error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            if isinstance(exc.__context__, KeyboardInterrupt) and _is_framework(exc):
                # click turns Ctrl-C at a prompt into Abort ("Aborted!", exit 1)
                error("interrupted")
                raise typer.Exit(130) from None
            if _is_framework(exc) and _is_usage_error(exc):
                # One error format for every mistake: `botvault: error: ...` + a hint.
                error(str(exc.format_message()), _usage_hint(exc))  # type: ignore[attr-defined]
                raise typer.Exit(2) from None
            if _is_framework(exc):
                raise  # --help, exits: the framework prints and exits for them
            _unexpected(exc)


def _is_usage_error(exc: Exception) -> bool:
    return getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message")


def _usage_hint(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "botvault"
    return f"see: {path} --help"


def _is_framework(exc: Exception) -> bool:
    # Typer vendors click in recent versions and uses the real click in older ones.
    return type(exc).__module__.split(".")[0] in ("click", "typer")


# Exit code for a refusal by the operating system (disk full, I/O error): not a bug, so not 1.
OS_ERROR_EXIT = 12


def _unexpected(exc: Exception) -> None:
    if isinstance(exc, OSError):
        error(f"{exc.strerror or type(exc).__name__}"
              + (f": {exc.filename}" if exc.filename else ""),
              "the vault on disk was left as it was; fix the cause and run the command again")
        raise typer.Exit(OS_ERROR_EXIT) from None
    # The type only: a message or a traceback's locals could hold a secret.
    error(f"unexpected error ({type(exc).__name__})",
          "this is a bug in botvault; please report it with the command you ran")
    raise typer.Exit(1) from None


_SHOWN: list[bool] = [False]  # a status line is on the terminal now


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A transient line on stderr while something slow runs, only on a terminal."""
    live = sys.stderr.isatty()
    if live:
        sys.stderr.write(message)
        sys.stderr.flush()
        _SHOWN[0] = True
    try:
        yield
    finally:
        if live:
            before_prompt()


def before_prompt() -> None:
    """Erase a status line still shown, so no `unlocking…` stands in front of a prompt
    (a prompt asked inside a `status` block, e.g. for a new passphrase), and drop terminal
    input nobody has read yet (the tail of a paste into the previous prompt), so it never
    answers this one."""
    from botvault.secret_paste import drain

    drain()
    if _SHOWN[0]:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
        _SHOWN[0] = False


def raw_out(text: str) -> None:
    """Data that must reach stdout byte for byte (secrets): `typer.echo` strips ANSI escape
    sequences when stdout is not a terminal, which would corrupt a secret holding them."""
    sys.stdout.write(text)
    sys.stdout.flush()


def json_out(value: Any) -> None:
    import json

    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    for row in (headers, *rows):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())

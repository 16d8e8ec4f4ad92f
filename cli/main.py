"""The `botvault` command: a thin Typer front end over the `vault` library.

Each command parses its input, calls one library function and prints. Heavy imports
(PyNaCl, argon2) happen inside the commands so that `--help` and `--version` start fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from . import entry_cmds, vault_cmds
from .output import error, reporting

__all__ = ["app", "main"]


class _Group(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        with reporting():
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Group,
    name="botvault",
    help="An encrypted local vault for exchange API key pairs, for people who run trading "
         "bots.\n\nExit codes: 0 ok, 1 unexpected, 2 invalid input, 3 wrong passphrase or "
         "modified vault, 4 not found / exists, 5 locked, 6 refused by scope, "
         "7 insecure permissions, 8 not a vault / corrupt / unsupported.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from vault import __version__

        typer.echo(f"botvault {__version__}")
        raise typer.Exit


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")
        ] = False) -> None:
    """Keep exchange API keys encrypted; hand exactly one to each bot."""


app.add_typer(vault_cmds.app)
app.add_typer(entry_cmds.app)


def main() -> None:
    if sys.platform == "win32":
        error("Windows is not supported yet; botvault runs on Linux and macOS")
        raise SystemExit(1)
    app()

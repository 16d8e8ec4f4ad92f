"""The `botvault` command: a thin Typer front end over the `vault` library.

Each command parses its input, calls one library function and prints. Heavy imports
(PyNaCl, argon2) happen inside the commands so that `--help` and `--version` start fast.
"""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .output import error, reporting

__all__ = ["app", "main"]

# Command -> module that defines it. Modules load when their command runs (or for --help),
# so `botvault --version` builds no command tree and imports none of them.
_COMMANDS = {
    "init": "vault_cmds", "add": "entry_cmds", "list": "entry_cmds", "show": "entry_cmds",
    "edit": "entry_cmds", "rename": "entry_cmds", "rm": "entry_cmds",
    "unlock": "agent_cmds", "lock": "agent_cmds", "status": "agent_cmds",
    "run": "handover_cmds", "env": "handover_cmds", "nonce": "nonce_cmds",
    "sign": "sign_cmds",
    "gateway": "gateway_cmds",
    "grant": "grant_cmds",
    "passwd": "vault_cmds", "restore": "vault_cmds", "rotate": "storage_cmds",
    "export": "storage_cmds", "import": "storage_cmds", "doctor": "storage_cmds",
}


class _Group(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        with reporting():
            return super().invoke(ctx)

    def list_commands(self, ctx: Any) -> list[str]:  # noqa: ARG002 -- click's signature
        return list(_COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module = _COMMANDS.get(cmd_name)
        if module is None:
            return None
        built = _built(module)
        return built.get_command(ctx, cmd_name) if hasattr(built, "get_command") else built


@functools.cache
def _built(module: str) -> Any:
    from importlib import import_module

    return typer.main.get_command(import_module(f"botvault.cli.{module}").app)


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
        from botvault import __version__

        typer.echo(f"botvault {__version__}")
        raise typer.Exit


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")
        ] = False) -> None:
    """Keep exchange API keys encrypted; hand exactly one to each bot."""


def main() -> None:
    if sys.platform == "win32":
        error("Windows is not supported yet; botvault runs on Linux and macOS")
        raise SystemExit(1)
    app()

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

from botvault.errors import EXIT_CODES

from .output import error, reporting
from .shared_options import (
    SHARED_HELP,
    PassCmdOpt,
    PassFileOpt,
    PassStdinOpt,
    VaultOpt,
    take_shared,
)

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
    "man": "help_cmds",
}


class _Group(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        with reporting():
            return super().invoke(ctx)

    def list_commands(self, ctx: Any) -> list[str]:  # noqa: ARG002 -- click's signature
        return list(_COMMANDS)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and name not in _COMMANDS and not name.startswith("-"):
            import click

            from botvault.did_you_mean import did_you_mean

            raise click.UsageError(f"No such command {name!r}.{did_you_mean(name, _COMMANDS)}",
                                   ctx)
        if name in _COMMANDS:  # the shared options after the command: the root's
            args = [name, *take_shared(self, ctx, self.get_command(ctx, name), args[1:])]
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module = _COMMANDS.get(cmd_name)
        if module is None:
            return None
        built = _built(module)
        command = built.get_command(ctx, cmd_name) if hasattr(built, "get_command") else built
        return _plain_help(command)


@functools.cache
def _built(module: str) -> Any:
    from importlib import import_module

    return typer.main.get_command(import_module(f"botvault.cli.{module}").app)


def _plain_help(command: Any) -> Any:
    """Help as click formats it: Rich markup would swallow `[default: ...]` in our help
    texts, and Typer's usage line writes required arguments as `{NAME}`. The same for the
    commands of a group (grant), so every group has one style. Each command's line in a
    listing is its whole first sentence (cli.help_cmds.first_sentence), wrapped, never cut
    ("e.g." used to end it). Help ends with the shared options, which are the root's."""
    if command is None:
        return None
    from .help_cmds import first_sentence

    command.rich_markup_mode = None
    if command.name != "man":
        command.epilog = SHARED_HELP
    if not command.short_help and command.help:
        command.short_help = first_sentence(command.help)
    for param in getattr(command, "params", []):
        if param.param_type_name == "argument":
            param.make_metavar = functools.partial(_argument_metavar, param)
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)
    return command


def _argument_metavar(param: Any, ctx: Any = None, *, usage: bool = False  # noqa: ARG001
                      ) -> str:  # ctx, usage: the signature Typer calls this with
    name = param.metavar or (param.name or "").upper()
    if param.nargs != 1:
        name += "..."
    return name if param.required else f"[{name}]"


app = typer.Typer(
    cls=_Group,
    name="botvault",
    help="An encrypted local vault for exchange API key pairs, for people who run trading "
         "bots.\n\nExit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in
                                             EXIT_CODES.items()) + ".\n\nStandard input "
         "is read only when a flag says so: --passphrase-stdin (one line, the passphrase) or "
         "--secret-stdin (all of it, the secret), never both.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from botvault import __version__

        typer.echo(f"botvault {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option(  # noqa: ARG001 -- handled by its eager callback
        "--version", "-V", callback=_version, is_eager=True, help="Show the version and exit."
        )] = False,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
    passphrase_stdin: PassStdinOpt = False,
) -> None:
    """Keep exchange API keys encrypted; hand exactly one to each bot."""
    from .access import Access
    from .passphrase import Sources

    ctx.obj = Access(vault, Sources(passphrase_file, passphrase_command, passphrase_stdin))


def main() -> None:
    if sys.platform == "win32":
        error("Windows is not supported yet; botvault runs on Linux and macOS")
        raise SystemExit(1)
    try:
        app()
    except KeyboardInterrupt:  # before or after a command runs: nothing was changed
        error("interrupted")
        raise SystemExit(130) from None

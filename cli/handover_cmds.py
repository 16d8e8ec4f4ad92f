"""Handing keys to bots: run (exec with the key's variables) and env (print them)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from . import output
from .access import Access, access
from .choices import EnvFormat, complete_names, value_of

if TYPE_CHECKING:
    from botvault.scopes import General

app = typer.Typer()

_CMD_KEY = "botvault.command"
Names = Annotated[list[str], typer.Argument(help="Entry names.", show_default=False,
                                            metavar="NAME", shell_complete=complete_names)]
MaxScope = Annotated[Optional[str], typer.Option(  # noqa: UP045 -- Typer needs Optional on 3.10
    "--max-scope", help="Refuse keys with more general access than this: read-only|full.",
    show_default=False, metavar="SCOPE")]
AllowWithdrawal = Annotated[bool, typer.Option(
    "--allow-withdrawal", help="Allow handing out keys that can withdraw funds.")]
Preset = Annotated[Optional[str], typer.Option(  # noqa: UP045 -- Typer needs Optional on 3.10
    "--as", help="Use a bot's fixed variable names, e.g. freqtrade (the preset must fit the "
    "key's product).", show_default=False, metavar="PRESET")]


class _SplitAtDashes(TyperCommand):
    """Keeps everything after `--` as the command, which click would otherwise merge into
    the positional NAMEs."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta[_CMD_KEY] = args[at + 1:]
            args = args[:at]
        parsed: list[str] = super().parse_args(ctx, args)
        return parsed

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "-- CMD [ARGS...]"]


def _assignments(acc: Access, names: list[str], max_scope: str | None,
                 allow_withdrawal: bool, preset: str | None) -> list[tuple[str, str]]:
    """(variable, value) pairs for the named keys: --max-scope is parsed before anything
    is asked for."""
    from botvault.key_variables import key_variables

    limit = _parse_max_scope(max_scope)
    return key_variables(acc.session(), names, max_scope=limit,
                         allow_withdrawal=allow_withdrawal, preset=preset)


def _parse_max_scope(value: str | None) -> General | None:
    if value is None:
        return None
    from botvault.scopes import parse_general

    return parse_general(value)


@app.command(cls=_SplitAtDashes, context_settings={"ignore_unknown_options": False})
def run(
    ctx: typer.Context,
    names: Names,
    max_scope: MaxScope = None,
    allow_withdrawal: AllowWithdrawal = False,
    as_: Preset = None,
) -> None:
    """Run a bot with the keys in its environment: botvault run NAME... -- CMD [ARGS...]

    botvault replaces itself with CMD (same pid; CMD's exit code is botvault's). Only the
    keys' variables are added to the environment; nothing else changes. Refused (exit 6,
    nothing started) for a key above --max-scope or able to withdraw without
    --allow-withdrawal.
    """
    from botvault.errors import InvalidInputError
    from botvault.handover import exec_command
    from botvault.handover.bot_environment import bot_environment

    command = ctx.meta.get(_CMD_KEY) or []
    if not command:
        raise InvalidInputError("no command to run", hint="botvault run NAME -- CMD [ARGS...]")
    pairs = _assignments(access(ctx), names, max_scope, allow_withdrawal, as_)
    exec_command(command, bot_environment(os.environ, pairs))


@app.command()
def env(
    ctx: typer.Context,
    names: Names,
    format_: Annotated[EnvFormat, typer.Option("--format", help="Output format.")
                       ] = EnvFormat.SH,
    max_scope: MaxScope = None,
    allow_withdrawal: AllowWithdrawal = False,
    as_: Preset = None,
) -> None:
    """Print the keys' variables: `eval "$(botvault env NAME)"` is safe for any secret.

    Same variable names and scope checks as `run`. The output holds the secret: prefer
    `run`, which never writes it anywhere.
    """
    from botvault.handover import render

    pairs = _assignments(access(ctx), names, max_scope, allow_withdrawal, as_)
    output.raw_out(render(pairs, value_of(format_)))  # type: ignore[arg-type]

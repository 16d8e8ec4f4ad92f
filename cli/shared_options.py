"""The options every command shares (--vault, --passphrase-*), declared once on the root.

They may stand before the command (`botvault --vault P list`) or after it, among the
command's own options (`botvault list --vault P`, as the README and systemd units have always
written them): `take_shared` lifts them out of the command's arguments for the root to read.
It reads the command's own declarations, so the value of one of its options (`--note
--vault`) and everything after `--` (`run NAME -- CMD --vault`) stay the command's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["SHARED_HELP", "PassCmdOpt", "PassFileOpt", "PassStdinOpt", "VaultOpt",
           "take_shared"]

# Optional[...] rather than `X | None`: Typer reads these annotations at runtime on 3.10.
VaultOpt = Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- see above
    "--vault", envvar="BOTVAULT_PATH", show_default=False, metavar="PATH",
    help="Vault file [default: the user data dir, e.g. ~/.local/share/botvault/vault.bv].")]
PassFileOpt = Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- see above
    "--passphrase-file", envvar="BOTVAULT_PASSPHRASE_FILE", show_default=False, metavar="FILE",
    help="Read the passphrase from FILE (must not be readable by others).")]
PassCmdOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045 -- see above
    "--passphrase-command", envvar="BOTVAULT_PASSPHRASE_COMMAND", show_default=False,
    metavar="CMD", help="Run CMD and read the passphrase from its first output line "
    "(e.g. systemd-ask-password); it may take BOTVAULT_PASSPHRASE_TIMEOUT seconds "
    "(default 30).")]
PassStdinOpt = Annotated[bool, typer.Option(
    "--passphrase-stdin", help="Read the passphrase from the first line of standard input "
    "(never together with --secret-stdin). Without it, standard input is not read for the "
    "passphrase.")]

_NAMES = frozenset({"--vault", "--passphrase-file", "--passphrase-command",
                    "--passphrase-stdin"})

# Every command's --help ends with this (the options themselves are the root's).
SHARED_HELP = ("Vault and passphrase, before or after the command (see botvault --help): "
               "--vault PATH (BOTVAULT_PATH), --passphrase-file FILE "
               "(BOTVAULT_PASSPHRASE_FILE), --passphrase-command CMD "
               "(BOTVAULT_PASSPHRASE_COMMAND), --passphrase-stdin.")


def _is_shared(word: str) -> bool:
    return word.partition("=")[0] in _NAMES


def _value_options(command: Any) -> set[str]:
    """The command's own options that take a value: the word after one is that value."""
    return {name for param in getattr(command, "params", [])
            if param.param_type_name == "option" and not param.is_flag and not param.count
            for name in (*param.opts, *param.secondary_opts)}


def _split(command: Any, ctx: Any, args: list[str]) -> tuple[list[str], list[str]]:
    """(the shared options and their values, the command's own arguments)."""
    shared: list[str] = []
    own: list[str] = []
    takes_value = _value_options(command)
    at = 0
    while at < len(args):
        word = args[at]
        if word == "--":
            own += args[at:]
            break
        if _is_shared(word):
            width = 2 if word in _NAMES and word != "--passphrase-stdin" else 1
            shared += args[at:at + width]
            at += width
            continue
        if word in takes_value:
            own += args[at:at + 2]
            at += 2
            continue
        sub = (command.get_command(ctx, word)
               if hasattr(command, "get_command") and not word.startswith("-") else None)
        if sub is not None:  # a group's subcommand (`grant add`): its own options from here
            more, rest = _split(sub, ctx, args[at + 1:])
            return shared + more, [*own, word, *rest]
        own.append(word)
        at += 1
    return shared, own


def take_shared(root: Any, ctx: Any, command: Any, args: list[str]) -> list[str]:
    """`args` (what follows the command's name) without the shared options, which are set
    on the root's parameters instead: given after the command, they win over the same
    option before it and over the environment, as an option given later does."""
    if not any(_is_shared(a) for a in args) or command is None:
        return args
    shared, own = _split(command, ctx, args)
    if not shared:
        return own
    try:
        values, _, _ = root.make_parser(ctx).parse_args(shared)
    except Exception:
        if ctx.resilient_parsing:  # shell completion: never fail
            return args
        raise  # e.g. `--vault` without a value: a usage error from the framework
    for param in root.params:
        if param.name in values and param.opts[0] in _NAMES:
            ctx.params[param.name] = param.type_cast_value(ctx, values[param.name])
    return own

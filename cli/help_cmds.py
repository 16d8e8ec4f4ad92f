"""`botvault man`: a man page made from the same help text as `--help`, shown in a pager at a
terminal; and the one rule for a command's line in a listing (`first_sentence`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["EXAMPLES", "app", "first_sentence", "render_man"]

app = typer.Typer()

# A sentence ends at a full stop followed by a space or the end, but not at an abbreviation
# (click's own short help stopped at "e.g.", cutting `edit`'s line in the middle).
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.")
_SPACE = re.compile(r"\s+")

# The commands a new user runs first, in order (the EXAMPLES section of the manual).
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("botvault init", "Create the vault; choose a passphrase (asked twice)."),
    ("botvault add kraken-main --exchange kraken-spot",
     "Store a key pair: the scopes as the exchange's form shows them, the api key, then the "
     "private key at a hidden prompt. Paste it whole, even wrapped over lines; compare the "
     "fingerprint printed."),
    ("botvault edit kraken-main --secret",
     "Replace a secret stored wrong, in place (grants, names and nonces stay)."),
    ("botvault list", "What is stored (never a secret)."),
    ("botvault unlock", "Ask the passphrase once; an agent holds the keys until `lock`."),
    ("botvault run kraken-main -- python bot.py", "Start a bot with its keys in its "
     "environment."),
    ("botvault doctor", "Check the vault and look for plaintext copies, each with its fix."),
)


def first_sentence(text: str) -> str:
    """The first sentence of a help text, whole, on one line."""
    paragraph = _SPACE.sub(" ", text.strip().split("\n\n", 1)[0])
    words = paragraph.split(" ")
    for i, word in enumerate(words):
        if word.endswith(".") and not word.endswith("...") and \
                word.lower() not in _ABBREVIATIONS:
            return " ".join(words[:i + 1])
    return paragraph


@app.command()
def man(
    ctx: typer.Context,
    install: Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- Typer, 3.10
        "--install", metavar="DIR", show_default=False,
        help="Write botvault.1 into DIR (e.g. ~/.local/share/man/man1) instead of printing "
             "it.")] = None,
) -> None:
    """Show the manual: in a pager at a terminal, else as roff (for `man -l -`).

    Made from the same text as every command's --help, with EXAMPLES of the commands a new
    user runs first. Piped, it prints the roff source: botvault man | man -l -
    """
    found = ctx.find_root()
    root = type(found)(found.command, info_name="botvault")  # whatever argv[0] was
    page = render_man(root.command, root)
    if install is None:
        if sys.stdout.isatty():
            _page(page, root)
            return
        typer.echo(page, nl=False)
        return
    from botvault.manpage_install import install_text

    target = install_text(install, "botvault.1", page)
    typer.echo(f"installed {target}")


def _roff(text: str) -> str:
    lines = []
    for line in text.replace("\\", "\\\\").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _page(page: str, root_ctx: Any) -> None:
    """The manual formatted by man(1) and its pager; without man, the plain text in
    click's pager ($PAGER, else less/more)."""
    import shutil
    import subprocess

    man = shutil.which("man")
    if man is not None:
        done = subprocess.run([man, "-l", "-"], input=page.encode(), check=False)
        if done.returncode == 0:
            return
    import click

    click.echo_via_pager(render_text(root_ctx.command, root_ctx))


def render_text(group: Any, root_ctx: Any) -> str:
    """The manual as plain text: the same parts as the man page."""
    out = [group.get_help(root_ctx), "", "EXAMPLES"]
    out += [f"  {command}\n      {why}" for command, why in EXAMPLES]
    for name in group.list_commands(root_ctx):
        if name != "man":
            command = group.get_command(root_ctx, name)
            sub = type(root_ctx)(command, info_name=name, parent=root_ctx)
            out += ["", command.get_help(sub)]
    return "\n".join(out) + "\n"


def render_man(group: Any, root_ctx: Any) -> str:
    from botvault import __version__

    out = [f'.TH BOTVAULT 1 "" "botvault {__version__}" "User Commands"',
           ".SH NAME", "botvault \\- " + _roff(group.help.split("\n", 1)[0]),
           ".SH SYNOPSIS", "botvault [GLOBAL OPTIONS] COMMAND [ARGS]...",
           ".SH DESCRIPTION", ".nf", _roff(group.get_help(root_ctx)), ".fi",
           ".SH EXAMPLES"]
    for command, why in EXAMPLES:
        out += [".TP", f".B {_roff(command)}", _roff(why)]
    out += [".SH COMMANDS"]
    for name in group.list_commands(root_ctx):
        if name == "man":
            continue
        command = group.get_command(root_ctx, name)
        sub = type(root_ctx)(command, info_name=name, parent=root_ctx)
        out += [f".SS {name}", ".nf", _roff(command.get_help(sub)), ".fi"]
    return "\n".join(out) + "\n"

"""`botvault man`: a man page made from the same help text as `--help`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

app = typer.Typer()


@app.command()
def man(
    ctx: typer.Context,
    install: Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- Typer, 3.10
        "--install", metavar="DIR", show_default=False,
        help="Write botvault.1 into DIR (e.g. ~/.local/share/man/man1) instead of printing "
             "it.")] = None,
) -> None:
    """Print the manual page (roff), made from the same text as every command's --help.

    Read it with: botvault man | man -l -
    """
    root = ctx.find_root()
    page = render_man(root.command, root)
    if install is None:
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


def render_man(group: Any, root_ctx: Any) -> str:
    from botvault import __version__

    out = [f'.TH BOTVAULT 1 "" "botvault {__version__}" "User Commands"',
           ".SH NAME", "botvault \\- " + _roff(group.help.split("\n", 1)[0]),
           ".SH SYNOPSIS", "botvault [GLOBAL OPTIONS] COMMAND [ARGS]...",
           ".SH DESCRIPTION", ".nf", _roff(group.get_help(root_ctx)), ".fi",
           ".SH COMMANDS"]
    for name in group.list_commands(root_ctx):
        if name == "man":
            continue
        command = group.get_command(root_ctx, name)
        sub = type(root_ctx)(command, info_name=name, parent=root_ctx)
        out += [f".SS {name}", ".nf", _roff(command.get_help(sub)), ".fi"]
    return "\n".join(out) + "\n"

"""The `nonce` command: API nonces from the per-key counter."""

from __future__ import annotations

from typing import Annotated

import typer

from .access import access
from .choices import NameArg

app = typer.Typer()


@app.command()
def nonce(
    ctx: typer.Context,
    name: NameArg,
    count: Annotated[int, typer.Option(help="How many nonces to print.", metavar="N", min=1,
                                       max=1_000_000)] = 1,
    peek: Annotated[bool, typer.Option(
        "--peek", help="Show the last nonce handed out and how far ahead of the clock it "
        "stands, without allocating (reads only: works on a read-only file system).")] = False,
    recover: Annotated[bool, typer.Option(
        "--recover", help="Repair the nonce state after it was refused (deleted, damaged or "
        "an older copy): keep what still verifies and set NAME's counter to at least the "
        "mark the vault recorded and the clock plus a margin, and say what was done.")] = False,
) -> None:
    """Print COUNT API nonces for NAME's key, one per line, in increasing order.

    Every nonce is above every one handed out before for that key, by any process on this
    machine (the library, the agent, this command), across crashes, in the entry's unit.
    """
    acc = access(ctx)
    if peek and recover:
        from botvault.errors import InvalidInputError

        raise InvalidInputError("--peek and --recover do not go together")
    if recover:
        with acc.open() as opened:
            for line in opened.recover_nonces(name):
                typer.echo(line)
        return
    if not peek:
        typer.echo("\n".join(map(str, acc.session().nonces(name, count))))
        return
    with acc.open() as opened:
        last, ahead = opened.peek_nonce(name)
        unit = opened.get(name).nonce_unit
    typer.echo(f"last: {'none yet' if last is None else last} ({unit})")
    typer.echo(f"ahead of the clock: {max(ahead, 0.0):.3f} s")

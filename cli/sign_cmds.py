"""The `sign` command: a Kraken request signed with a stored key (for scripts, debugging)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import output
from .access import access
from .choices import NameArg

app = typer.Typer()


@app.command()
def sign(
    ctx: typer.Context,
    name: NameArg,
    path: Annotated[str, typer.Argument(
        help="Endpoint path, e.g. /0/private/Balance or /derivatives/api/v3/sendorder.",
        show_default=False)],
    data: Annotated[str, typer.Option(help="URL-encoded body (Futures GET: the query "
                                      "string), e.g. 'pair=XBTUSD&type=buy'.",
                                      metavar="BODY")] = "",
    method: Annotated[str, typer.Option(help="HTTP method (Futures GET/PUT endpoints).",
                                        metavar="METHOD")
                      ] = "POST",
    json_: Annotated[bool, typer.Option("--json", help="Print {nonce, body, headers}.")
                     ] = False,
) -> None:
    """Sign one Kraken request: allocate the key's next nonce, print the body and headers.

    Through the agent when it runs (withdrawal endpoints only if it was unlocked with
    --allow-withdrawal); otherwise in this process, where withdrawals are never signed.
    Refused (exit 6) beyond the entry's scope. The secret is never printed.
    """
    signed = access(ctx).session().sign(name, path, data, method)
    body, headers, nonce = signed.body, signed.headers, signed.nonce
    if json_:
        output.json_out({"nonce": nonce, "body": body, "headers": headers})
        return
    typer.echo(body)
    for key, value in headers.items():
        typer.echo(f"{key}: {value}")

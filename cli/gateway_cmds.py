"""The `gateway` command: a local Kraken REST gateway for bots that hold a grant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from botvault.gateway.config import DEFAULT_FUTURES_URL, DEFAULT_PORT, DEFAULT_SPOT_URL

from . import output
from .access import access

app = typer.Typer()


@app.command()
def gateway(
    ctx: typer.Context,
    listen: Annotated[str, typer.Option(
        metavar="HOST:PORT", help="Address to listen on (an IP address; port 0: any free one)."
        )] = f"127.0.0.1:{DEFAULT_PORT}",
    spot_url: Annotated[str, typer.Option(help="Kraken Spot REST origin.", metavar="URL")
                        ] = DEFAULT_SPOT_URL,
    futures_url: Annotated[str, typer.Option(help="Kraken Futures REST origin.",
                                             metavar="URL")] = DEFAULT_FUTURES_URL,
    tier: Annotated[str, typer.Option(
        help="Your Kraken verification tier (Spot rate counter).",
        metavar="<starter|intermediate|pro>")] = "starter",
    ca_file: Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- Typer needs Optional
        metavar="FILE", show_default=False,
        help="Verify the exchange's certificate against this CA bundle instead of the "
             "system's.")] = None,
    max_wait: Annotated[float, typer.Option(
        help="Seconds a request may wait for the rate limit before it is answered "
             "EAPI:Rate limit exceeded.", metavar="SECONDS")] = 30.0,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Allow listening on an address other than loopback "
                               "(requests then cross the network; see SECURITY.md).")] = False,
) -> None:
    """Serve Kraken's REST APIs to bots that hold a grant, in the foreground.

    Needs an unlocked agent; holds no secret itself. Point a bot's base URL here and give it
    its grant (botvault grant add) as api key and secret. Stops on Ctrl-C or SIGTERM.
    """
    from botvault.gateway import GatewayConfig, parse_listen
    from botvault.gateway.server import serve

    address = parse_listen(listen)
    config = GatewayConfig(listen=address, spot_url=spot_url, futures_url=futures_url,
                           tier=tier, ca_file=ca_file, max_wait=max_wait,
                           allow_remote=allow_remote)
    if not address.is_loopback:
        output.warn(f"listening on {address}, not loopback: any host that reaches it can send "
                    "requests with a grant, in plain HTTP")

    def announce(url: str) -> None:
        typer.echo(f"botvault gateway listening on {url}")

    serve(config, access(ctx).vault, announce)

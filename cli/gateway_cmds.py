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
    replay_window: Annotated[float, typer.Option(
        help="A grant-signed request is accepted once, while its nonce is within this many "
             "seconds of the clock.", metavar="SECONDS")] = 10.0,
    max_connections: Annotated[int, typer.Option(
        help="Open connections at most; more are closed at once.", metavar="N")] = 1024,
    max_per_grant: Annotated[int, typer.Option(
        help="Requests of one grant in progress at most; more are answered "
             "EService:Busy.", metavar="N")] = 256,
    audit_failure: Annotated[str, typer.Option(
        help="When an audit line cannot be written: refuse (forward nothing unaudited) or "
             "continue.", metavar="refuse|continue")] = "refuse",
    audit_keep_days: Annotated[float, typer.Option(
        help="Keep forwarded-request audit lines this many days ...",
        metavar="DAYS")] = 90.0,
    audit_max_mb: Annotated[float, typer.Option(
        help="... and at most this many MB of them.", metavar="MB")] = 100.0,
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
                           replay_window=replay_window, max_connections=max_connections,
                           max_per_grant=max_per_grant, audit_failure=audit_failure,
                           audit_keep_days=audit_keep_days, audit_max_mb=audit_max_mb,
                           allow_remote=allow_remote)
    if not address.is_loopback:
        output.warn(f"listening on {address}, not loopback: any host that reaches it can send "
                    "requests with a grant, in plain HTTP")

    def announce(url: str) -> None:
        typer.echo(f"botvault gateway listening on {url}")

    serve(config, access(ctx).vault, announce)

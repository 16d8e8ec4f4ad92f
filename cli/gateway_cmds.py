"""The `gateway` command: a local Kraken REST gateway for bots that hold a grant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from botvault.gateway.config import DEFAULT_FUTURES_URL, DEFAULT_PORT, DEFAULT_SPOT_URL

from . import output
from .access import access

app = typer.Typer()
gateway_app = typer.Typer(invoke_without_command=True)
app.add_typer(gateway_app, name="gateway")

_File = Optional[Path]  # noqa: UP045 -- Typer reads annotations at runtime on 3.10
_Text = Optional[str]  # noqa: UP045 -- same


@gateway_app.callback()
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
        "--allow-remote", help="Accepted for old command lines; an address other than "
                               "loopback needs --tls-cert and --tls-key.")] = False,
    tls_cert: Annotated[_File, typer.Option(
        metavar="FILE", show_default=False,
        help="Serve HTTPS with this certificate (PEM; botvault gateway tls-init makes one). "
             "Needed to listen on an address other than loopback.")] = None,
    tls_key: Annotated[_File, typer.Option(
        metavar="FILE", show_default=False, help="The certificate's private key (0600).")
                       ] = None,
    etcd: Annotated[_Text, typer.Option(
        metavar="URL[,URL...]", show_default=False,
        help="Share every key's nonce counter, request order and rate counter with other "
             "gateways through this etcd cluster (no secret goes there).")] = None,
    etcd_ca: Annotated[_File, typer.Option(
        metavar="FILE", show_default=False, help="CA bundle for etcd's https:// members."
        )] = None,
    etcd_cert: Annotated[_File, typer.Option(
        metavar="FILE", show_default=False, help="Client certificate for etcd.")] = None,
    etcd_key: Annotated[_File, typer.Option(
        metavar="FILE", show_default=False, help="Its private key (0600).")] = None,
    etcd_user: Annotated[_Text, typer.Option(
        metavar="NAME", show_default=False, help="etcd user (with --etcd-password-file)."
        )] = None,
    etcd_password_file: Annotated[_File, typer.Option(
        metavar="FILE", show_default=False,
        help="File holding the etcd user's password (0600; never on the command line).")
                                  ] = None,
    etcd_lease_ttl: Annotated[int, typer.Option(
        metavar="SECONDS",
        help="How long a key's lock outlives a gateway that died holding it.")] = 5,
) -> None:
    """Serve Kraken's REST APIs to bots that hold a grant, in the foreground.

    Needs an unlocked agent; holds no secret itself. Point a bot's base URL here and give it
    its grant (botvault grant add) as api key and secret. Stops on Ctrl-C or SIGTERM.
    """
    if ctx.invoked_subcommand is not None:
        given = [p.opts[0] for p in ctx.command.params
                 if ctx.params.get(p.name or "") != p.default]
        if given:  # they would be silently ignored
            raise typer.BadParameter(f"options of the gateway itself ({', '.join(given)}) do "
                                     f"nothing for `gateway {ctx.invoked_subcommand}`")
        return
    from botvault.gateway import GatewayConfig, parse_listen
    from botvault.gateway.etcd_settings import EtcdSettings, parse_endpoints
    from botvault.gateway.server import serve

    address = parse_listen(listen)
    shared = None if etcd is None else EtcdSettings(
        parse_endpoints(etcd), ca_file=etcd_ca, cert_file=etcd_cert, key_file=etcd_key,
        user=etcd_user, password_file=etcd_password_file, lease_ttl=etcd_lease_ttl)
    config = GatewayConfig(listen=address, spot_url=spot_url, futures_url=futures_url,
                           tier=tier, ca_file=ca_file, max_wait=max_wait,
                           replay_window=replay_window, max_connections=max_connections,
                           max_per_grant=max_per_grant, audit_failure=audit_failure,
                           audit_keep_days=audit_keep_days, audit_max_mb=audit_max_mb,
                           allow_remote=allow_remote, tls_cert=tls_cert, tls_key=tls_key,
                           etcd=shared)
    if not address.is_loopback:
        output.warn(f"listening on {address}, not loopback: any host that reaches it can send "
                    "requests with a grant (over TLS)")

    def announce(url: str) -> None:
        typer.echo(f"botvault gateway listening on {url}")

    serve(config, access(ctx).vault, announce)


@gateway_app.command("tls-init")
def tls_init(
    ctx: typer.Context,
    name: Annotated[list[str], typer.Option(
        "--name", metavar="HOST", show_default=False,
        help="A host name or IP address bots use to reach the gateway (repeat for more).")],
    ca_key_out: Annotated[_File, typer.Option(
        metavar="FILE", show_default=False,
        help="Write a new CA's key here (e.g. removable media) instead of beside the vault.")
                          ] = None,
    ca_key: Annotated[_File, typer.Option(
        metavar="FILE", show_default=False,
        help="The existing CA's key, when it is kept away from the vault.")] = None,
) -> None:
    """Make a private CA (once) and a server certificate for the gateway, beside the vault.

    Give the bots the CA file it prints (and nothing else): they then trust this gateway and
    no other server. Run again to renew or to add names; the CA stays.
    """
    from botvault.gateway.tls_init import tls_init as make

    made = make(access(ctx).path, name, ca_key_out=ca_key_out, ca_key=ca_key)
    typer.echo(f"{'created a CA and ' if made.new_ca else ''}a server certificate for "
               f"{', '.join(made.names)}")
    typer.echo(f"  certificate: {made.cert}\n  key:         {made.key}")
    typer.echo(f"  serve:  botvault gateway --listen ADDR:PORT --tls-cert {made.cert} "
               f"--tls-key {made.key}")
    typer.echo(f"CA file to give the bots: {made.ca_cert}")
    typer.echo("  requests-based (krakenex, python-kraken-sdk): "
               f"REQUESTS_CA_BUNDLE={made.ca_cert}")
    typer.echo(f"  aiohttp-based (python-kraken-sdk async): SSL_CERT_FILE={made.ca_cert}")
    typer.echo("  ccxt: 'requests_trust_env': True with REQUESTS_CA_BUNDLE (sync; its 'verify' "
               f"takes no file), 'cafile': '{made.ca_cert}' (async_support)")
    typer.echo(f"CA key: {made.ca_key} - needed only to issue the next certificate; keep "
               "it offline (move it away and pass --ca-key FILE next time)")

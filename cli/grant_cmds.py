"""`botvault grant`: credentials for one bot, usable only at the gateway (add, list, show,
revoke, log)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import output
from .access import access
from .durations import parse_duration

if TYPE_CHECKING:
    pass

app = typer.Typer()
grant_app = typer.Typer(help="Grants: a Kraken-shaped key pair for one bot, for one entry, "
                        "that works only through `botvault gateway` and only for what it "
                        "allows. Revoking one takes effect at once.", no_args_is_help=True)
app.add_typer(grant_app, name="grant")

Bot = Annotated[str, typer.Argument(help="The bot's name: a-z 0-9 . _ - (up to 64).",
                                    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
# The trading policy (botvault.trading_policy): each limit optional; in `grant edit`, the
# value `none` lifts one.
_Text = Optional[str]  # noqa: UP045 -- Typer needs Optional
PairsOpt = Annotated[_Text, typer.Option(
    "--pairs", help="Only these Spot pairs / Futures symbols (any of Kraken's names).",
    metavar="P[,P...]", show_default=False)]
TypesOpt = Annotated[_Text, typer.Option(
    "--order-types", help="Only these Kraken order types (limit, stop-loss-limit; lmt...).",
    metavar="T[,T...]", show_default=False)]
VolumeOpt = Annotated[_Text, typer.Option(
    "--max-order-volume", help="Most base units (Futures: contracts) per order.",
    metavar="V", show_default=False)]
NotionalOpt = Annotated[_Text, typer.Option(
    "--max-order-notional", help="Most price x volume per order (quote currency); orders "
    "whose price the request does not bound (market, stop) are then refused.", metavar="N",
    show_default=False)]
DailyOpt = Annotated[_Text, typer.Option(
    "--max-daily-notional", help="Most notional summed over a UTC day.", metavar="N",
    show_default=False)]
WithdrawKeysOpt = Annotated[_Text, typer.Option(
    "--withdraw-keys", help="Only these Kraken withdrawal key names.", metavar="NAME[,NAME...]",
    show_default=False)]
WithdrawAmountOpt = Annotated[_Text, typer.Option(
    "--max-withdraw-amount", help="Most per withdrawal or transfer.", metavar="A",
    show_default=False)]


@grant_app.command()
def add(
    ctx: typer.Context,
    bot: Bot,
    key: Annotated[str, typer.Option("--key", help="The entry the bot may use.",
                                     show_default=False, metavar="ENTRY")],
    general: Annotated[str, typer.Option(help="General API scope, at most the entry's.",
                                         show_default=False, metavar="<read-only|full>")],
    withdrawal: Annotated[str, typer.Option(help="Withdrawal API scope, at most the "
                                            "entry's.", show_default=False,
                                            metavar="<none|full>")],
    expires: Annotated[Optional[str], typer.Option(  # noqa: UP045 -- Typer needs Optional
        help="Stop working after this long (90s, 15m, 8h, 30d) [default: never].",
        show_default=False, metavar="DURATION")] = None,
    require_nonce: Annotated[bool, typer.Option(
        "--require-nonce", help="Refuse the bot's requests that carry no nonce (Kraken "
        "Futures lets a request go without; ccxt's krakenfutures sends none).")] = False,
    pairs: PairsOpt = None,
    order_types: TypesOpt = None,
    max_order_volume: VolumeOpt = None,
    max_order_notional: NotionalOpt = None,
    max_daily_notional: DailyOpt = None,
    reduce_only: Annotated[bool, typer.Option(
        "--reduce-only", help="Only orders flagged reduce-only (Futures reduceOnly, Spot "
        "margin reduce_only).")] = False,
    withdraw_keys: WithdrawKeysOpt = None,
    max_withdraw_amount: WithdrawAmountOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Issue a grant and print its key pair once, as the exchange does.

    Give the pair to the bot as its api key and secret, with the gateway's URL as its base
    URL. The grant never exceeds the entry's scopes (exit 6 if asked to).
    """
    from botvault.entries import check_name
    from botvault.grant_policy import add_with_policy

    check_name(bot)
    seconds = parse_duration(expires) if expires is not None else None
    options = {"pairs": pairs, "order_types": order_types, "max_order_volume": max_order_volume,
               "max_order_notional": max_order_notional,
               "max_daily_notional": max_daily_notional, "reduce_only": reduce_only or None,
               "withdraw_keys": withdraw_keys, "max_withdraw_amount": max_withdraw_amount}
    with access(ctx).open() as opened:
        grant = add_with_policy(opened, bot, entry=key, general=general, withdrawal=withdrawal,
                                expires_in=seconds, options=options,
                                require_nonce=require_nonce)
    if json_:
        import json

        output.raw_out(json.dumps({"api_key": grant.api_key,
                                   "api_secret": grant.api_secret.reveal()}) + "\n")
        return
    output.info(f"granted {grant.bot} on {grant.entry} (general {grant.general.value}, "
                f"withdrawal {grant.withdrawal.value}, "
                f"expires {grant.metadata()['expires_at'] or 'never'})")
    for line in grant.policy.describe():
        output.info(f"policy: {line}")
    output.raw_out(f"api key:    {grant.api_key}\napi secret: {grant.api_secret.reveal()}\n")
    output.info("hint: put these in the bot's configuration now; the secret is not shown "
                "again (revoke and add a new grant if it is lost)")


def _row(doc: dict[str, Any]) -> list[str]:
    from botvault.grant_policy import policy_summary
    from botvault.trading_policy.model import Policy

    return [doc["bot"], doc["entry"], doc["general"], doc["withdrawal"], doc["state"],
            doc["expires_at"] or "never", doc["api_key"],
            policy_summary(Policy.from_doc(doc.get("policy")))]


@grant_app.command("list")
def list_(
    ctx: typer.Context,
    json_: JsonOpt = False,
) -> None:
    """List grants (revoked and expired ones too). Never a secret."""
    from botvault.grant_ops import grant_documents

    with access(ctx).open() as opened:
        docs = grant_documents(opened)
    if json_:
        output.json_out(docs)
        return
    output.table(["BOT", "ENTRY", "GENERAL", "WITHDRAWAL", "STATE", "EXPIRES", "API KEY",
                  "POLICY"],
                 [_row(d) for d in docs])


@grant_app.command()
def show(
    ctx: typer.Context,
    bot: Bot,
    json_: JsonOpt = False,
) -> None:
    """Show one grant: its entry, scopes, state, expiry, api key, trading policy and the
    day's spending against its budget. Never its secret."""
    from botvault.grant_policy import grant_details

    with access(ctx).open() as opened:
        doc = grant_details(opened, bot)
    if json_:
        output.json_out(doc)
        return
    policy, spent = doc.pop("policy"), doc.pop("spent_today", None)
    for key, value in doc.items():
        typer.echo(f"{key + ':':<12} {'-' if value in (None, '') else value}")
    typer.echo(f"{'policy:':<12} {'-' if not policy else ''}".rstrip())
    for key, value in (policy or {}).items():
        shown = ",".join(value) if isinstance(value, list) else value
        typer.echo(f"  {key.replace('_', '-') + ':':<22} {shown}")
    if spent is not None:
        typer.echo(f"{'spent:':<12} {spent['notional']} of {spent['of']} on {spent['day']} "
                   "(UTC)")


@grant_app.command()
def edit(
    ctx: typer.Context,
    bot: Bot,
    pairs: PairsOpt = None,
    order_types: TypesOpt = None,
    max_order_volume: VolumeOpt = None,
    max_order_notional: NotionalOpt = None,
    max_daily_notional: DailyOpt = None,
    reduce_only: Annotated[Optional[bool], typer.Option(  # noqa: UP045 -- Typer needs Optional
        "--reduce-only/--no-reduce-only", help="Require (or stop requiring) reduce-only "
        "orders.", show_default=False)] = None,
    withdraw_keys: WithdrawKeysOpt = None,
    max_withdraw_amount: WithdrawAmountOpt = None,
) -> None:
    """Narrow or widen a grant's trading policy: each limit given replaces that limit, and
    `none` lifts it (--pairs none). Takes effect at the agent's next request."""
    from botvault.errors import InvalidInputError
    from botvault.grant_policy import edit_policy

    options = {"pairs": pairs, "order_types": order_types, "max_order_volume": max_order_volume,
               "max_order_notional": max_order_notional,
               "max_daily_notional": max_daily_notional, "reduce_only": reduce_only,
               "withdraw_keys": withdraw_keys, "max_withdraw_amount": max_withdraw_amount}
    if all(v is None for v in options.values()):
        raise InvalidInputError("grant edit changes nothing without a policy option",
                                hint="for example: botvault grant edit BOT --max-order-volume 1")
    with access(ctx).open() as opened:
        grant = edit_policy(opened, bot, options)
    typer.echo(f"policy of {grant.bot}: " + (", ".join(grant.policy.describe()) or "none"))


@grant_app.command()
def revoke(
    ctx: typer.Context,
    bot: Bot,
) -> None:
    """Revoke a grant. A running agent (and so the gateway) refuses it from the next request."""
    from botvault.grant_ops import revoke_grant

    with access(ctx).open() as opened:
        grant = revoke_grant(opened, bot)
    typer.echo(f"revoked {grant.bot} (at {grant.revoked_at})")


@grant_app.command()
def log(
    ctx: typer.Context,
    bot: Annotated[Optional[str], typer.Argument(  # noqa: UP045 -- Typer needs Optional
        help="Only this bot's requests.", show_default=False)] = None,
    json_: Annotated[bool, typer.Option("--json", help="JSON lines, as recorded.")] = False,
) -> None:
    """Show the gateway's audit log: one line per request (time, grant, entry, endpoint,
    outcome, upstream status). Needs no passphrase: the log holds no secret."""
    from botvault.audit import read_audit

    records = read_audit(access(ctx).path, grant=bot)
    if json_:
        import json

        for record in records:
            typer.echo(json.dumps(record, ensure_ascii=True, sort_keys=True))
        return
    output.table(["TIME", "GRANT", "ENTRY", "ENDPOINT", "OUTCOME", "STATUS"],
                 [[_cell(r.get(k)) for k in ("time", "grant", "entry", "endpoint", "outcome",
                                             "upstream_status")] for r in records])


def _cell(value: Any) -> str:
    # The log is written by another process: show its text, never a terminal escape in it.
    text = "-" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)

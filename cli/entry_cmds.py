"""Commands about entries: add, list, show, edit, rename, rm."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import output
from .access import access
from .choices import (
    ExchangeOpt,
    General,
    GeneralOpt,
    NameArg,
    NonceUnit,
    NonceUnitOpt,
    Withdrawal,
    WithdrawalOpt,
    complete_names,
    value_of,
)
from .confirm import YesOpt, confirm, refuse_without_terminal
from .passphrase import ask_until_valid, interactive, read_secret, refuse_two_stdin_readers

if TYPE_CHECKING:
    from botvault.entries import Entry

app = typer.Typer()

Name = NameArg
Text = Optional[str]  # noqa: UP045 -- Typer reads annotations at runtime on 3.10
SecretStdin = Annotated[bool, typer.Option(
    "--secret-stdin", help="Read the secret from standard input: all of it, one trailing "
    "newline removed; more lines or a NUL are refused. Give the passphrase another way "
    "(--passphrase-file, or unlock first).")]


def ask_scope(value: str | None, flag: str, axis: type[General] | type[Withdrawal]) -> str:
    """Scopes must be what the user chose on the exchange's form, never a guess of ours."""
    from botvault.errors import InvalidInputError

    if value is not None:
        return value
    choices = "|".join(choice.value for choice in axis)
    if not interactive():
        raise InvalidInputError(f"missing {flag}",
                                hint=f"say what the key form shows: {flag} {choices}")

    def check(answer: str) -> None:
        if answer not in choices.split("|"):
            raise InvalidInputError(f"{flag} is one of {choices}, not {answer!r}")

    return ask_until_valid(lambda: str(typer.prompt(
        f"{flag.lstrip('-').capitalize()} API scope ({choices})", err=True)), check)


def require_key_source(api_key: str | None, secret_stdin: bool) -> None:
    """Without a terminal the api key must be an option: standard input is the secret's."""
    if api_key is None and not interactive():
        from botvault.errors import InvalidInputError

        raise InvalidInputError("missing --api-key (there is no terminal to ask for it)",
                                hint="pass --api-key KEY" + (
                                    "" if secret_stdin else " and the secret with "
                                    "--secret-stdin"))


def ask_pair(exchange: str, api_key: str | None, secret_stdin: bool,
             label: str = "API key (public)") -> tuple[str, str]:
    """The api key (an option, or asked) and the secret, each checked as it comes; at a
    terminal a wrong one is asked for again with what was wrong."""
    from botvault.exchanges.validation import validate_api_key
    from botvault.secret_paste import check_pasted_secret

    if api_key is None:
        def ask() -> str:
            output.before_prompt()
            return str(typer.prompt(label, err=True))

        key = ask_until_valid(ask, lambda k: validate_api_key(exchange, k, warn=False))
    else:
        key = api_key
    secret = read_secret(secret_stdin, check=lambda s: check_pasted_secret(exchange, s))
    return key, secret


@app.command()
def add(
    ctx: typer.Context,
    name: Name,
    exchange: ExchangeOpt,
    api_key: Annotated[Text, typer.Option(
        help="The public API key (asked when missing).", show_default=False, metavar="KEY")
        ] = None,
    general: GeneralOpt = None,
    withdrawal: WithdrawalOpt = None,
    account: Annotated[Text, typer.Option(help="Account label (Kraken allows 50 keys each).",
                                          show_default=False, metavar="LABEL")] = None,
    note: Annotated[str, typer.Option(help="Free text.", metavar="TEXT")] = "",
    nonce_unit: NonceUnitOpt = NonceUnit.MS,
    secret_stdin: SecretStdin = False,
) -> None:
    """Store a key pair. The secret comes from a hidden prompt or --secret-stdin, never argv.

    At the prompt, paste the private key whole: a paste wrapped over several lines is read
    to its end. Kraken secrets must decode to the 64 bytes Kraken issues; line breaks and
    spaces of a wrap are removed with a warning (a generic secret over several lines is
    refused). A fingerprint is printed to compare with what you pasted. Every option is
    checked before anything is asked or read. A secret stored wrong is fixed with
    `botvault edit NAME --secret`.
    """
    from botvault.entry_checks import check_new_entry
    from botvault.scopes import parse_general, parse_withdrawal

    acc = access(ctx)
    profile = str(value_of(exchange))
    # Everything that can be wrong with the arguments is reported before any prompt or read.
    check_new_entry(name, exchange=profile, api_key=api_key, account=account, note=note)
    refuse_two_stdin_readers(acc.sources, secret_stdin=secret_stdin)
    require_key_source(api_key, secret_stdin)
    general_scope = parse_general(ask_scope(value_of(general), "--general", General))
    withdrawal_scope = parse_withdrawal(ask_scope(value_of(withdrawal), "--withdrawal",
                                                  Withdrawal))
    with acc.open() as opened:
        opened.check_new_name(name)
        key, secret = ask_pair(profile, api_key, secret_stdin)
        entry = opened.add(name, exchange=profile, api_key=key, api_secret=secret,
                           general=general_scope, withdrawal=withdrawal_scope,
                           account=account, note=note, nonce_unit=str(value_of(nonce_unit)))
    _echo_saved("added", entry)
    typer.echo(f"fingerprint: {entry.fingerprint}")


@app.command("list")
def list_(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    all_: Annotated[bool, typer.Option("--all", help="Include retired pairs (kept after "
                                       "`rotate`, never handed out).")] = False,
) -> None:
    """List entries: name, exchange, scopes, account, creation time. No secret material."""
    with access(ctx).open() as opened:
        entries = opened.list(retired=all_)
    docs = [{k: e.metadata()[k] for k in ("name", "exchange", "general", "withdrawal",
                                          "account", "created_at")} for e in entries]
    if json_:
        output.json_out(docs)
        return
    output.table(["NAME", "EXCHANGE", "GENERAL", "WITHDRAWAL", "ACCOUNT", "CREATED"],
                 [[d["name"] + (" (retired)" if e.retired else ""), d["exchange"], d["general"],
                   d["withdrawal"], d["account"] or "-", d["created_at"]]
                  for d, e in zip(docs, entries, strict=True)])


_SHOW_KEYS = ("name", "exchange", "api_key", "general", "withdrawal", "account", "note",
              "nonce_unit", "created_at")


@app.command()
def show(
    ctx: typer.Context,
    name: Name,
    reveal: Annotated[bool, typer.Option("--reveal", help="Also print the api secret.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show one entry's labels and api key; the secret only with --reveal."""
    with access(ctx).open() as opened:
        entry = opened.get(name)
    doc: dict[str, Any] = {k: entry.metadata()[k] for k in _SHOW_KEYS}
    if reveal:
        doc["api_secret"] = entry.api_secret.reveal()
    if json_:
        output.json_out(doc)
        return
    for key, value in [*doc.items(), ("fingerprint", entry.fingerprint)]:
        output.raw_out(f"{key + ':':<12} {'-' if value in (None, '') else value}\n")


@app.command()
def edit(
    ctx: typer.Context,
    name: Name,
    general: GeneralOpt = None,
    withdrawal: WithdrawalOpt = None,
    account: Annotated[Text, typer.Option(help="Account label (\"\" clears).",
                                          show_default=False, metavar="LABEL")] = None,
    note: Annotated[Text, typer.Option(help="Free text.", show_default=False, metavar="TEXT")
                    ] = None,
    nonce_unit: Annotated[Optional[NonceUnit], typer.Option(  # noqa: UP045 -- Typer, 3.10
        "--nonce-unit", help="API nonce unit.", show_default=False)] = None,
    env_key: Annotated[Text, typer.Option(help="Variable name for the api key (\"\" resets).",
                                          show_default=False, metavar="VAR")] = None,
    env_secret: Annotated[Text, typer.Option(help="Variable name for the secret (\"\" resets).",
                                             show_default=False, metavar="VAR")] = None,
    secret: Annotated[bool, typer.Option(
        "--secret", help="Replace a secret stored wrong (cut, mistyped): asked at a hidden "
        "prompt. The api key, scopes, grants and nonce counter stay.")] = False,
    secret_stdin: Annotated[bool, typer.Option(
        "--secret-stdin", help="Like --secret, with the secret read from standard input (all "
        "of it, one trailing newline removed).")] = False,
) -> None:
    """Relabel an entry (after changing the key's permissions on the exchange, say), or fix
    its secret in place with --secret / --secret-stdin.

    A new key pair from the exchange goes in with `botvault rotate` instead.
    """
    from botvault.entry_checks import check_entry_changes
    from botvault.errors import InvalidInputError

    changes = {"general": value_of(general), "withdrawal": value_of(withdrawal),
               "account": account, "note": note, "nonce_unit": value_of(nonce_unit),
               "env_key": env_key, "env_secret": env_secret}
    new_secret = secret or secret_stdin
    check_entry_changes(name, changes, replaces_secret=new_secret)  # before any question
    acc = access(ctx)
    if secret and secret_stdin:
        raise InvalidInputError("--secret and --secret-stdin exclude each other",
                                hint="--secret asks at the terminal; --secret-stdin reads "
                                     "standard input")
    refuse_two_stdin_readers(acc.sources, secret_stdin=secret_stdin)
    if secret and not interactive():
        raise InvalidInputError("no terminal to ask for the secret",
                                hint="pipe it in: botvault edit NAME --secret-stdin < FILE")
    with acc.open() as opened:
        entry = opened.get(name)
        if new_secret:
            from botvault.secret_fix import replace_secret
            from botvault.secret_paste import check_pasted_secret

            exchange = entry.exchange
            value = read_secret(secret_stdin, check=lambda s: check_pasted_secret(exchange, s),
                                prompt="New API secret (private key, hidden)")
        if any(v is not None for v in changes.values()):
            entry = opened.edit(name, **changes)
        if new_secret:
            entry = replace_secret(opened, name, value)
    _echo_saved("updated", entry)
    if new_secret:
        typer.echo(f"secret replaced; fingerprint: {entry.fingerprint}")


def _echo_saved(verb: str, entry: Entry) -> None:
    typer.echo(f"{verb} {entry.name} ({entry.exchange}, general {entry.general.value}, "
               f"withdrawal {entry.withdrawal.value})")


@app.command()
def rename(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="Current name.", show_default=False,
                                       metavar="OLD", shell_complete=complete_names)],
    new: Annotated[str, typer.Argument(help="New name.", show_default=False, metavar="NEW")],
) -> None:
    """Rename an entry."""
    from botvault.entries import check_name

    check_name(old)
    check_name(new)  # both names are checked before the passphrase is asked for
    with access(ctx).open() as opened:
        entry = opened.rename(old, new)
    typer.echo(f"renamed {old} to {entry.name}")


@app.command()
def rm(
    ctx: typer.Context,
    name: Name,
    yes: YesOpt = False,
) -> None:
    """Remove an entry (it stays in the automatic backups until they rotate out)."""
    from botvault.entries import check_name

    check_name(name)
    refusal = f"refusing to remove {name!r} without --yes"
    refuse_without_terminal(yes, refusal)  # before the passphrase is asked for
    with access(ctx).open() as opened:
        opened.get(name)
        confirm(yes, f"Remove {name}? Revoke the key on the exchange too.", refusal)
        opened.remove(name)
    typer.echo(f"removed {name}")

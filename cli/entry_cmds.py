"""Commands about entries: add, list, show, edit, rename, rm."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import output
from .common import Access, PassCmdOpt, PassFileOpt, VaultOpt, open_vault
from .passphrase import interactive, read_secret, stdin_line

if TYPE_CHECKING:
    from botvault.entries import Entry

app = typer.Typer()

Name = Annotated[str, typer.Argument(help="Entry name: a-z 0-9 . _ - (up to 64).",
                                     show_default=False)]
_EXCHANGES = "kraken-futures|kraken-spot|generic"
_GENERAL = "As on the exchange's key form, \"General API\": none|read-only|full."
_WITHDRAWAL = "As on the exchange's key form, \"Withdrawal API\": none|full."
Text = Optional[str]  # noqa: UP045 -- Typer reads annotations at runtime on 3.10


def _ask_scope(value: str | None, flag: str, choices: str) -> str:
    """Scopes must be what the user chose on the exchange's form, never a guess of ours."""
    if value is not None:
        return value
    if not interactive():
        from botvault.errors import InvalidInputError

        raise InvalidInputError(f"missing {flag}",
                                hint=f"say what the key form shows: {flag} {choices}")
    return str(typer.prompt(f"{flag.lstrip('-').capitalize()} API scope ({choices})"))


@app.command()
def add(
    name: Name,
    exchange: Annotated[str, typer.Option(help=_EXCHANGES, show_default=False)],
    api_key: Annotated[Text, typer.Option(
        help="The public API key (prompted when missing).", show_default=False)] = None,
    general: Annotated[Text, typer.Option(help=_GENERAL, show_default=False)] = None,
    withdrawal: Annotated[Text, typer.Option(help=_WITHDRAWAL, show_default=False)] = None,
    account: Annotated[Text, typer.Option(help="Account label (Kraken allows 50 keys each).",
                                          show_default=False)] = None,
    note: Annotated[str, typer.Option(help="Free text.")] = "",
    nonce_unit: Annotated[str, typer.Option(help="API nonce unit: ms|us|10ns.")] = "ms",
    secret_stdin: Annotated[bool, typer.Option(
        "--secret-stdin", help="Read the secret from standard input (one line).")] = False,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """Store a key pair. The secret comes from a hidden prompt or --secret-stdin, never argv.

    Kraken secrets are checked (base64, at least 32 bytes); whitespace from a wrapped copy
    is removed with a warning. A fingerprint is printed to compare with what you pasted.
    """
    from botvault.entries import check_name
    from botvault.scopes import parse_general, parse_withdrawal

    check_name(name)  # a typo in the name is reported before any prompt
    general_scope = parse_general(_ask_scope(general, "--general", "none|read-only|full"))
    withdrawal_scope = parse_withdrawal(_ask_scope(withdrawal, "--withdrawal", "none|full"))
    with open_vault(Access(vault, passphrase_file, passphrase_command)) as opened:
        key = api_key if api_key is not None else _ask_api_key()
        entry = opened.add(name, exchange=exchange, api_key=key, api_secret=read_secret(
            secret_stdin), general=general_scope, withdrawal=withdrawal_scope,
            account=account, note=note, nonce_unit=nonce_unit)
    typer.echo(f"added {entry.name} ({entry.exchange}, general {entry.general.value}, "
               f"withdrawal {entry.withdrawal.value})")
    typer.echo(f"fingerprint: {entry.fingerprint}")


def _ask_api_key() -> str:
    if interactive():
        return str(typer.prompt("API key (public)"))
    return stdin_line("api key")


@app.command("list")
def list_(
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    all_: Annotated[bool, typer.Option("--all", help="Include retired pairs (kept after "
                                       "`rotate`, never handed out).")] = False,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """List entries: name, exchange, scopes, account, creation time. No secret material."""
    with open_vault(Access(vault, passphrase_file, passphrase_command)) as opened:
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
    name: Name,
    reveal: Annotated[bool, typer.Option("--reveal", help="Also print the api secret.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """Show one entry's labels and api key; the secret only with --reveal."""
    with open_vault(Access(vault, passphrase_file, passphrase_command)) as opened:
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
    name: Name,
    general: Annotated[Text, typer.Option(help=_GENERAL, show_default=False)] = None,
    withdrawal: Annotated[Text, typer.Option(help=_WITHDRAWAL, show_default=False)] = None,
    account: Annotated[Text, typer.Option(help="Account label (\"\" clears).",
                                          show_default=False)] = None,
    note: Annotated[Text, typer.Option(help="Free text.", show_default=False)] = None,
    nonce_unit: Annotated[Text, typer.Option(help="API nonce unit: ms|us|10ns.",
                                             show_default=False)] = None,
    env_key: Annotated[Text, typer.Option(help="Variable name for the api key (\"\" resets).",
                                          show_default=False)] = None,
    env_secret: Annotated[Text, typer.Option(help="Variable name for the secret (\"\" resets).",
                                             show_default=False)] = None,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """Relabel an entry, e.g. after changing the key's permissions on the exchange."""
    from botvault.errors import InvalidInputError

    changes = {"general": general, "withdrawal": withdrawal, "account": account, "note": note,
               "nonce_unit": nonce_unit, "env_key": env_key, "env_secret": env_secret}
    if all(v is None for v in changes.values()):
        raise InvalidInputError("nothing to change", hint="see: botvault edit --help")
    with open_vault(Access(vault, passphrase_file, passphrase_command)) as opened:
        entry = opened.edit(name, **changes)
    _echo_saved("updated", entry)


def _echo_saved(verb: str, entry: Entry) -> None:
    typer.echo(f"{verb} {entry.name} ({entry.exchange}, general {entry.general.value}, "
               f"withdrawal {entry.withdrawal.value})")


@app.command()
def rename(
    old: Annotated[str, typer.Argument(help="Current name.", show_default=False)],
    new: Annotated[str, typer.Argument(help="New name.", show_default=False)],
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """Rename an entry."""
    with open_vault(Access(vault, passphrase_file, passphrase_command)) as opened:
        entry = opened.rename(old, new)
    typer.echo(f"renamed {old} to {entry.name}")


@app.command()
def rm(
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")
                   ] = False,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """Remove an entry (it stays in the automatic backups until they rotate out)."""
    from botvault.errors import InvalidInputError

    with open_vault(Access(vault, passphrase_file, passphrase_command)) as opened:
        opened.get(name)
        if not yes:
            if not interactive():
                raise InvalidInputError(f"refusing to remove {name!r} without --yes")
            typer.confirm(f"Remove {name}? Revoke the key on the exchange too.", abort=True)
        opened.remove(name)
    typer.echo(f"removed {name}")

"""Moving keys in and out safely: import, export, rotate, doctor."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import output
from .common import Access, PassCmdOpt, PassFileOpt, VaultOpt, open_vault
from .passphrase import (
    Sources,
    interactive,
    read_file,
    read_new_passphrase,
    read_passphrase,
    read_secret,
    stdin_line,
)

if TYPE_CHECKING:
    from botvault.core import Vault
    from botvault.importers import Candidate

app = typer.Typer()

Text = Optional[str]  # noqa: UP045 -- Typer reads annotations at runtime on 3.10
FileArg = Annotated[Path, typer.Argument(help="File.", show_default=False)]
_FORMATS = ("env", "ccxt", "freqtrade", "botvault")


@app.command()
def export(
    file: FileArg,
    export_passphrase_file: Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- Typer
        help="Read the export's own passphrase from FILE.", show_default=False,
        metavar="FILE")] = None,
    only: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045 -- Typer
        "--only", help="Export just this entry (repeatable).", show_default=False)] = None,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """Write an encrypted copy of the vault (or --only some entries) to FILE, under a
    passphrase of its own: an offline backup. Read it back with `import --format botvault`.
    """
    from botvault.export import export_entries
    from botvault.passphrase_policy import check_new_passphrase

    with open_vault(Access(vault, passphrase_file, passphrase_command)) as opened:
        secret = read_new_passphrase(export_passphrase_file, "Export passphrase")
        for warning in check_new_passphrase(secret):
            output.warn(warning)
        with output.status("encrypting…"):
            path = export_entries(opened, file, secret, only=only)
        count = len(only) if only else len(opened.list(retired=True))
    typer.echo(f"exported {count} entr{'y' if count == 1 else 'ies'} to {path}")
    typer.echo("keep the export passphrase apart from the file (e.g. on paper)")


@app.command("import")
def import_(
    file: FileArg,
    format_: Annotated[str, typer.Option("--format", help="env, ccxt, freqtrade or botvault.",
                                         show_default=False)],
    name: Annotated[Text, typer.Option(help="Entry name (several keys: NAME-2, ...).",
                                       show_default=False)] = None,
    exchange: Annotated[Text, typer.Option(help="kraken-futures|kraken-spot|generic "
                                           "(overrides what the file says).",
                                           show_default=False)] = None,
    general: Annotated[Text, typer.Option(help="General API scope.", show_default=False)
                       ] = None,
    withdrawal: Annotated[Text, typer.Option(help="Withdrawal API scope.", show_default=False)
                          ] = None,
    key_var: Annotated[Text, typer.Option(help="env: the api key's variable.",
                                          show_default=False)] = None,
    secret_var: Annotated[Text, typer.Option(help="env: the secret's variable.",
                                             show_default=False)] = None,
    import_passphrase_file: Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- Typer
        help="botvault: the export's passphrase file.", show_default=False, metavar="FILE"
        )] = None,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """Move keys from a plaintext file (.env, ccxt or freqtrade JSON) or a botvault export
    into the vault, with the same checks as `add`. Delete the plaintext afterwards."""
    from botvault.errors import InvalidInputError

    if format_ not in _FORMATS:
        raise InvalidInputError(f"unknown format {format_!r}", hint="use " + ", ".join(_FORMATS))
    with open_vault(Access(vault, passphrase_file, passphrase_command)) as opened:
        if format_ == "botvault":
            names = _import_export(opened, file, import_passphrase_file)
        else:
            found = _read_plaintext(file, format_, key_var, secret_var)
            names = _add_candidates(opened, found, name=name, exchange=exchange,
                                    general=general, withdrawal=withdrawal)
    typer.echo(f"imported {', '.join(names)} from {file}")
    if format_ != "botvault":
        output.warn(f"{file} still holds the secret in plaintext: delete it now "
                    f"(e.g. shred -u {file}); `botvault doctor` reports it while it remains")


def _import_export(opened: Vault, file: Path, passphrase_file: Path | None) -> list[str]:
    from botvault.export import read_export

    # The export's own passphrase: a file, else the terminal or the next stdin line.
    secret = read_file(passphrase_file) if passphrase_file else read_passphrase(
        Sources(), "Export passphrase")
    with output.status("unlocking export…"):
        entries = read_export(file, secret)
    return [e.name for e in opened.import_entries(entries)]


def _read_plaintext(file: Path, format_: str, key_var: str | None,
                    secret_var: str | None) -> list[Candidate]:
    from botvault import importers
    from botvault.errors import InvalidInputError

    if format_ == "env":
        found = importers.read_env(file, key_var=key_var, secret_var=secret_var)
    elif format_ == "ccxt":
        found = importers.read_ccxt(file)
    else:
        found = importers.read_freqtrade(file)
    if not found:
        raise InvalidInputError(f"no key pair found in {file}",
                                hint="for .env files name the variables with --key-var and "
                                     "--secret-var")
    return found


def _add_candidates(opened: Vault, found: list[Candidate], *, name: str | None,
                    exchange: str | None, general: str | None, withdrawal: str | None
                    ) -> list[str]:
    from botvault.errors import InvalidInputError

    from .entry_cmds import _ask_scope

    general = _ask_scope(general, "--general", "none|read-only|full")
    withdrawal = _ask_scope(withdrawal, "--withdrawal", "none|full")
    added = []
    for i, cand in enumerate(found, start=1):
        entry_name = (f"{name}-{i}" if i > 1 else name) if name else cand.name
        if not entry_name:
            raise InvalidInputError(f"no name for the key found at {cand.source}",
                                    hint="pass --name NAME")
        profile = exchange or cand.exchange
        if not profile:
            raise InvalidInputError(f"the file does not say which exchange {cand.source} is "
                                    "for", hint="pass --exchange")
        for note in cand.notes:
            output.warn(f"{cand.source}: {note}")
        opened.add(entry_name, exchange=profile, api_key=cand.api_key,
                   api_secret=cand.api_secret, general=general, withdrawal=withdrawal,
                   note=f"imported from {cand.source}")
        added.append(entry_name)
    return added


@app.command()
def rotate(
    name: Annotated[str, typer.Argument(help="Entry name.", show_default=False)],
    api_key: Annotated[Text, typer.Option(help="The new public API key (prompted when "
                                          "missing).", show_default=False)] = None,
    secret_stdin: Annotated[bool, typer.Option(
        "--secret-stdin", help="Read the new secret from standard input.")] = False,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """After creating a new key on the exchange: store it under the same name with the same
    scopes, env names and nonce unit. The old pair is kept as NAME.retired-N (never handed
    out) until you `botvault rm` it; revoke it on the exchange."""
    with open_vault(Access(vault, passphrase_file, passphrase_command)) as opened:
        opened.get(name)
        key = api_key if api_key is not None else (
            str(typer.prompt("New API key (public)")) if interactive()
            else stdin_line("api key"))
        entry, retired = opened.rotate(name, api_key=key,
                                       api_secret=read_secret(secret_stdin))
    typer.echo(f"rotated {entry.name}; fingerprint: {entry.fingerprint}")
    typer.echo(f"old pair kept as {retired.name}: revoke it on the exchange, then "
               f"`botvault rm {retired.name}`")


@app.command()
def doctor(
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    max_key_age: Annotated[int, typer.Option(help="Days before a key is due for rotation.",
                                             min=1)] = 90,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """Check the vault and common places for problems, each with the exact fix.

    Exit 0 when everything passes, 10 when anything warns or fails. Secrets are never
    printed: plaintext copies are reported by file and line.
    """
    from botvault import doctor as checks
    from botvault.errors import VaultError

    acc = Access(vault, passphrase_file, passphrase_command)
    opened: Vault | None = None
    try:
        opened = open_vault(acc)
    except VaultError as exc:
        output.warn(f"vault not opened ({exc.message}); checks that need it are skipped")
    try:
        findings = checks.diagnose(acc.path, opened, home=Path.home(), cwd=Path.cwd(),
                                   now=datetime.now(timezone.utc),
                                   max_key_age_days=max_key_age)
    finally:
        if opened is not None:
            opened.close()
    _print_findings(findings, json_)
    raise typer.Exit(checks.exit_code(findings))


def _print_findings(findings: list[Any], as_json: bool) -> None:
    if as_json:
        output.json_out([{"check": f.check, "severity": f.severity, "title": f.title,
                          "explanation": f.explanation, "fix": f.fix, "where": list(f.where)}
                         for f in findings])
        return
    for f in findings:
        typer.echo(f"[{f.severity}]{' ' * (5 - len(f.severity))}{f.title}")
        if f.severity != "ok":
            typer.echo(f"       {f.explanation}")
            for place in f.where:
                typer.echo(f"       - {place}")
            if f.fix:
                typer.echo(f"       fix: {f.fix}")

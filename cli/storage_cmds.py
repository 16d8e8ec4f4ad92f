"""Moving keys in and out safely: import, export, rotate, doctor."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import output
from .access import access
from .choices import Exchange, General, ImportFormat, NameArg, Withdrawal, value_of
from .entry_cmds import SecretStdin, ask_pair, ask_scope, require_key_source
from .passphrase import (
    check_new_passphrase_source,
    interactive,
    read_file,
    read_new_passphrase,
    refuse_two_stdin_readers,
)
from .weak import AllowWeakOpt, checked_new_passphrase

if TYPE_CHECKING:
    from botvault.open_vault import Vault

app = typer.Typer()

Text = Optional[str]  # noqa: UP045 -- Typer reads annotations at runtime on 3.10
FileArg = Annotated[Path, typer.Argument(help="File.", show_default=False, metavar="FILE")]


@app.command()
def export(
    ctx: typer.Context,
    file: FileArg,
    export_passphrase_file: Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- Typer
        help="Read the export's own passphrase from FILE (same rules as --passphrase-file; "
        "without it the passphrase is asked twice at the terminal).", show_default=False,
        metavar="FILE")] = None,
    only: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045 -- Typer
        "--only", help="Export just this entry (repeatable).", show_default=False,
        metavar="NAME")] = None,
    allow_weak_passphrase: AllowWeakOpt = False,
) -> None:
    """Write an encrypted copy of the vault (or --only some entries) to FILE, under a
    passphrase of its own: an offline backup. Read it back with `import --format botvault`.

    FILE is written atomically and never overwritten; nothing else is left beside it.
    """
    from botvault.entries import check_name
    from botvault.export import check_export_target, export_entries

    for name in only or []:
        check_name(name)
    check_export_target(file)
    source = (export_passphrase_file, "Export passphrase")
    check_new_passphrase_source(*source, flag="--export-passphrase-file")  # before unlocking

    def new_passphrase() -> str:
        return checked_new_passphrase(read_new_passphrase(
            *source, flag="--export-passphrase-file"), allow_weak=allow_weak_passphrase)

    # A passphrase file is read and judged before the vault's passphrase is asked for.
    secret = new_passphrase() if export_passphrase_file else None
    with access(ctx).open() as opened:
        if secret is None:
            secret = new_passphrase()
        with output.status("encrypting…"):
            path = export_entries(opened, file, secret, only=only)
        count = len(only) if only else len(opened.list(retired=True))
    typer.echo(f"exported {count} entr{'y' if count == 1 else 'ies'} to {path}")
    typer.echo("keep the export passphrase apart from the file (e.g. on paper)")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: FileArg,
    format_: Annotated[ImportFormat, typer.Option("--format", help="The file's format.",
                                                  show_default=False)],
    name: Annotated[Text, typer.Option(help="Entry name (several keys: NAME-2, ...).",
                                       show_default=False, metavar="NAME")] = None,
    exchange: Annotated[Optional[Exchange], typer.Option(  # noqa: UP045 -- Typer, 3.10
        help="Exchange profile (overrides what the file says).", show_default=False)] = None,
    general: Annotated[Optional[General], typer.Option(  # noqa: UP045 -- Typer, 3.10
        help="General API scope (asked when missing).", show_default=False)] = None,
    withdrawal: Annotated[Optional[Withdrawal], typer.Option(  # noqa: UP045 -- Typer, 3.10
        help="Withdrawal API scope (asked when missing).", show_default=False)] = None,
    key_var: Annotated[Text, typer.Option(help="env: the api key's variable.",
                                          show_default=False, metavar="VAR")] = None,
    secret_var: Annotated[Text, typer.Option(help="env: the secret's variable.",
                                             show_default=False, metavar="VAR")] = None,
    import_passphrase_file: Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- Typer
        help="botvault: the export's passphrase file (same rules as --passphrase-file).",
        show_default=False, metavar="FILE")] = None,
) -> None:
    """Move keys from a plaintext file (.env, ccxt or freqtrade JSON) or a botvault export
    into the vault, with the same checks as `add`. Delete the plaintext afterwards.

    All or nothing: every key is checked first and all are saved at once, or every problem
    is reported and nothing is saved.
    """
    from botvault.entries import check_name

    if name is not None:
        check_name(name)
    acc = access(ctx)
    fmt = str(value_of(format_))
    if fmt == "botvault":
        if import_passphrase_file is None and not interactive():
            from botvault.errors import InvalidInputError

            raise InvalidInputError("no terminal to ask for the export's passphrase",
                                    hint="pass --import-passphrase-file FILE")
        with acc.open() as opened:
            names = _import_export(opened, file, import_passphrase_file)
    else:
        from botvault.import_check import entries_from, read_plaintext, with_scopes

        found = read_plaintext(file, fmt, key_var=key_var, secret_var=secret_var)
        # Every key is checked (names, exchange, secrets) before a scope is asked: what the
        # file and argv already say is wrong fails first.
        checked = entries_from(found, name=name, exchange=value_of(exchange), source=file)
        entries = with_scopes(checked, ask_scope(value_of(general), "--general", General),
                              ask_scope(value_of(withdrawal), "--withdrawal", Withdrawal))
        with acc.open() as opened:
            names = [e.name for e in opened.import_entries(entries)]
    typer.echo(f"imported {', '.join(names)} from {file}")
    if fmt != "botvault":
        output.warn(f"{file} still holds the secret in plaintext: delete it now "
                    f"(e.g. shred -u {file}); `botvault doctor` reports it while it remains")


def _import_export(opened: Vault, file: Path, passphrase_file: Path | None) -> list[str]:
    from botvault.export import read_export

    from .passphrase import Sources, read_passphrase

    secret = read_file(passphrase_file, "import passphrase file") if passphrase_file else \
        read_passphrase(Sources(), "Export passphrase")
    with output.status("unlocking export…"):
        entries = read_export(file, secret)
    return [e.name for e in opened.import_entries(entries)]


@app.command()
def rotate(
    ctx: typer.Context,
    name: NameArg,
    api_key: Annotated[Text, typer.Option(help="The new public API key (asked when "
                                          "missing).", show_default=False, metavar="KEY")
                       ] = None,
    secret_stdin: SecretStdin = False,
) -> None:
    """After creating a new key on the exchange: store it under the same name with the same
    scopes, env names and nonce unit. The old pair is kept as NAME.retired-N (never handed
    out) until you `botvault rm` it; revoke it on the exchange."""
    from botvault.entries import check_name

    acc = access(ctx)
    check_name(name)
    refuse_two_stdin_readers(acc.sources, secret_stdin=secret_stdin)
    require_key_source(api_key, secret_stdin)
    with acc.open() as opened:
        current = opened.get(name)
        if api_key is not None:
            from botvault.exchanges.validation import validate_api_key

            validate_api_key(current.exchange, api_key, warn=False)
        key, secret = ask_pair(current.exchange, api_key, secret_stdin,
                               label="New API key (public)")
        entry, retired = opened.rotate(name, api_key=key, api_secret=secret)
    typer.echo(f"rotated {entry.name}; fingerprint: {entry.fingerprint}")
    typer.echo(f"old pair kept as {retired.name}: revoke it on the exchange, then "
               f"`botvault rm {retired.name}`")


@app.command()
def doctor(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    max_key_age: Annotated[int, typer.Option(help="Days before a key is due for rotation.",
                                             metavar="DAYS",
                                             min=1)] = 90,
    scan: Annotated[Optional[list[Path]], typer.Option(  # noqa: UP045 -- Typer
        "--scan", help="Also search this folder (and one level down) for plaintext copies "
        "(repeatable).", show_default=False, metavar="DIR")] = None,
    remove_secret_lines: Annotated[bool, typer.Option(
        "--remove-secret-lines", help="Remove the lines that hold a stored secret from the "
        ".env files found (only those lines; the rest of each file is kept).")] = False,
) -> None:
    """Check the vault and common places for problems, each with the exact fix.

    Plaintext copies are searched in this folder, your home, your shell histories, the
    files keys were imported from (wherever doctor runs) and each --scan folder; the output
    says where. At a terminal, doctor offers to remove the lines holding a secret.
    Exit 0 when everything passes, 10 when anything warns or fails. Secrets are never
    printed: plaintext copies are reported by file and line.
    """
    from botvault import doctor as checks
    from botvault.errors import InvalidInputError, VaultError

    folders = tuple(Path(d).absolute() for d in scan or [])
    for folder in folders:  # argv is checked before the passphrase is asked for
        if not folder.is_dir():
            raise InvalidInputError(f"--scan {folder}: not a folder",
                                    hint="name a folder to search, e.g. --scan ~/bots")
    acc = access(ctx)
    opened: Vault | None = None
    try:
        opened = acc.open()
    except VaultError as exc:
        output.warn(f"vault not opened ({exc.message}); checks that need it are skipped")
    try:
        findings = checks.diagnose(acc.path, opened, home=Path.home(), cwd=Path.cwd(),
                                   now=datetime.now(timezone.utc),
                                   max_key_age_days=max_key_age, scan=folders)
        _print_findings(findings, json_)
        if opened is not None and not json_:
            _offer_line_removal(opened, folders, ask=not remove_secret_lines)
    finally:
        if opened is not None:
            opened.close()
    raise typer.Exit(checks.exit_code(findings))


def _offer_line_removal(opened: Vault, scan: tuple[Path, ...], *, ask: bool) -> None:
    """Remove the lines holding a stored secret from .env files: with --remove-secret-lines,
    or at a terminal when the user says yes to each file. Never the whole file."""
    from botvault.doctor.cleanup import remove_secret_lines, secret_line_removals

    if ask and not interactive():
        return
    entries = opened.list(retired=True)
    for found in secret_line_removals(entries, Path.home(), Path.cwd(), scan):
        lines = ", ".join(map(str, found.lines))
        if ask:
            output.before_prompt()
            if not typer.confirm(f"Remove line(s) {lines} of {found.file} (they hold the "
                                 f"secret of {', '.join(found.entries)}; the rest of the file "
                                 "stays)?", default=False, err=True):
                continue
        removed = remove_secret_lines(found.file, entries)
        output.info(f"removed {removed} line(s) holding a secret from {found.file}")


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

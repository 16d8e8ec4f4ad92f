"""Commands about the vault file itself: init, passwd, restore."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import output
from .access import Access, access
from .confirm import YesOpt, confirm
from .passphrase import read_new_passphrase, read_passphrase
from .weak import AllowWeakOpt, GenerateOpt, checked_new_passphrase

app = typer.Typer()

_MEMORY_HELP = "Argon2id memory in MiB (recommended at least 256; floor 19)."


@app.command()
def init(
    ctx: typer.Context,
    kdf_seconds: Annotated[float, typer.Option(
        help="Target unlock time when calibrating.", min=0.05, max=10,
        metavar="SECONDS")] = 1.0,
    kdf_memory: Annotated[Optional[int], typer.Option(  # noqa: UP045 -- Typer needs Optional
        help=_MEMORY_HELP, show_default="256", metavar="MIB")] = None,
    kdf_iterations: Annotated[Optional[int], typer.Option(  # noqa: UP045 -- Typer needs Optional
        help="Argon2id passes (floor 2). Given: no calibration.",
        show_default="calibrated", metavar="N")] = None,
    kdf_parallelism: Annotated[Optional[int], typer.Option(  # noqa: UP045 -- Typer needs Optional
        help="Argon2id lanes (1-16).", show_default="min(4, CPUs)",
        metavar="N")] = None,
    generate_passphrase: GenerateOpt = False,
    allow_weak_passphrase: AllowWeakOpt = False,
) -> None:
    """Create a new vault, protected by a passphrase you choose (asked twice).

    Without KDF flags, Argon2id is calibrated to about one second on this machine with at
    least 256 MiB of memory.
    """
    from botvault.kdf_choice import new_vault_kdf
    from botvault.new_vault import check_new_vault_path
    from botvault.open_vault import Vault

    acc = access(ctx)
    path = check_new_vault_path(acc.vault)
    # Impossible or unaffordable parameters are refused before anything is asked.
    kdf = new_vault_kdf(kdf_memory, kdf_iterations, kdf_parallelism)
    passphrase = _generated() if generate_passphrase else _new_passphrase(
        acc, allow_weak=allow_weak_passphrase)
    params = kdf.choose(kdf_seconds, busy=output.status)
    with output.status("creating…"):
        created = Vault.create(path, passphrase, kdf=params)
    typer.echo(f"created vault at {created.path}")
    typer.echo(f"key derivation: {params.describe()}")


def _new_passphrase(acc: Access, *, allow_weak: bool) -> str:
    if acc.sources.command is not None:
        from .passphrase import run_command

        new = run_command(acc.sources.command)
    else:
        new = read_new_passphrase(acc.sources.file, "New vault passphrase",
                                  flag="--passphrase-file", stdin=acc.sources.stdin)
    return checked_new_passphrase(new, allow_weak=allow_weak)


def _generated() -> str:
    from botvault.passphrase_policy import generate_passphrase

    passphrase = generate_passphrase()
    typer.echo(f"your passphrase (shown once): {passphrase}")
    typer.echo("write it down on paper and keep it somewhere safe; there is no recovery")
    return passphrase


@app.command()
def passwd(
    ctx: typer.Context,
    new_passphrase_file: Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- Typer
        help="Read the new passphrase from FILE.", show_default=False, metavar="FILE")] = None,
    upgrade_kdf: Annotated[bool, typer.Option(
        "--upgrade-kdf", help="Also recalibrate Argon2id to today's policy (about 1 s, "
        "256 MiB or more); never lowers memory or passes.")] = False,
    keep_passphrase: Annotated[bool, typer.Option(
        "--keep-passphrase", help="With --upgrade-kdf: keep the current passphrase.")] = False,
    generate_passphrase: GenerateOpt = False,
    drop_damaged_backups: Annotated[bool, typer.Option(
        "--drop-damaged-backups", help="Remove backups that fail to verify instead of "
        "stopping.")] = False,
    allow_weak_passphrase: AllowWeakOpt = False,
) -> None:
    """Change the passphrase (or, with --upgrade-kdf, the key derivation cost).

    Every entry and every backup is re-encrypted under a new data key, so an old copy of
    the file opens only itself with the old passphrase. A running agent is locked. The
    current passphrase is always asked for, even while unlocked.
    """
    from botvault.errors import InvalidInputError
    from botvault.kdf_choice import upgraded_kdf

    if keep_passphrase and not upgrade_kdf:
        raise InvalidInputError("--keep-passphrase only goes with --upgrade-kdf")
    if keep_passphrase and generate_passphrase:
        raise InvalidInputError("--keep-passphrase and --generate-passphrase exclude each other")
    acc = access(ctx)
    from_file = None
    if new_passphrase_file is not None and not keep_passphrase and not generate_passphrase:
        # A file is read and judged before the current passphrase is asked for.
        from_file = checked_new_passphrase(read_new_passphrase(new_passphrase_file),
                                           allow_weak=allow_weak_passphrase)
    current = read_passphrase(acc.sources)
    session = replace(acc.session(), passphrase=lambda: current)
    with session.open_with_passphrase() as opened:
        kdf = None
        if upgrade_kdf:
            with output.status("calibrating…"):
                proposed, kdf = upgraded_kdf(opened.kdf)
            if kdf is None:
                typer.echo(f"key derivation already at least as strong as today's policy "
                           f"({proposed.describe()}): {opened.kdf.describe()}; kept")
                if keep_passphrase:
                    typer.echo("nothing changed")
                    return
        if keep_passphrase:
            new = current
        elif generate_passphrase:
            new = _generated()
        elif from_file is not None:
            new = from_file
        else:
            new = checked_new_passphrase(read_new_passphrase(
                new_passphrase_file, stdin=acc.sources.stdin), allow_weak=allow_weak_passphrase)
        with output.status("re-encrypting…"):
            dropped = opened.change_passphrase(new, kdf=kdf,
                                               drop_damaged_backups=drop_damaged_backups)
        described = opened.kdf.describe()
    # The vault is changed: from here on only messages, never a failure.
    typer.echo("passphrase changed" if not keep_passphrase else "key derivation upgraded")
    typer.echo(f"key derivation: {described}")
    if dropped:
        output.warn(f"removed the damaged backups of generation {', '.join(map(str, dropped))}")
    _lock_agent(acc.path)


def _lock_agent(path: Path) -> None:
    """An agent still holds the old data key, which opens nothing saved from now on."""
    from botvault.errors import VaultError
    from botvault.session import lock_agent

    try:
        if not lock_agent(path):
            return
    except (VaultError, OSError) as exc:
        output.warn(f"could not lock the running agent ({exc}); it locks itself at its next "
                    "request; run: botvault lock")
        return
    typer.echo("the running agent held the old key and was locked; run: botvault unlock")


@app.command()
def restore(
    ctx: typer.Context,
    generation: Annotated[Optional[int], typer.Argument(  # noqa: UP045 -- Typer
        help="Generation to bring back (see --list).", show_default=False)] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the backups: generation, "
                                        "entries, when saved.")] = False,
    yes: YesOpt = False,
) -> None:
    """Bring back one of the automatic backups (the last 5 saves are kept).

    The restored state is saved as a new generation, so the current one becomes a backup
    too and nothing is lost. This is also the deliberate way back when the vault file is
    older than one already seen on this machine: restore its own generation to keep it.
    """
    from botvault.errors import InvalidInputError

    if not list_ and generation is None:
        raise InvalidInputError("name a GENERATION to restore, or pass --list")
    # A file older than one seen here opens: `restore` is the deliberate way back.
    with access(ctx).session().open(allow_rollback=True) as opened:
        backups = opened.backups()
        if list_:
            typer.echo(f"current generation: {opened.generation} "
                       f"({len(opened.list(retired=True))} entries)")
            output.table(["GENERATION", "ENTRIES", "SAVED"],
                         [[str(b.generation), str(b.entries), _saved_at(b.path)]
                          for b in backups])
            return
        assert generation is not None  # noqa: S101 -- narrowed by the check above
        from botvault.restore_preview import restore_preview

        change = restore_preview(backups, opened, generation)
        if change is not None:
            typer.echo(f"generation {generation} (saved {_saved_at(change.backup.path)}) "
                       f"holds {change.backup.entries} entries")
            typer.echo(f"brings back: {', '.join(change.brings_back) or 'nothing'}")
            typer.echo(f"drops: {', '.join(change.drops) or 'nothing'}")
            confirm(yes, "Restore it? The current state stays a backup",
                    f"refusing to restore generation {generation} without --yes",
                    hint="nothing was changed")
        opened.restore(generation)
        typer.echo(f"restored generation {generation}; saved as generation {opened.generation}")


def _saved_at(path: Path) -> str:
    from .durations import format_moment

    try:
        return format_moment(path.stat().st_mtime)
    except OSError:
        return "-"

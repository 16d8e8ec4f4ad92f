"""Commands about the agent: unlock, lock, status."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from . import output
from .common import Access, PassCmdOpt, PassFileOpt, VaultOpt, agent_or_none
from .durations import format_duration, parse_duration
from .passphrase import read_passphrase

app = typer.Typer()


@app.command()
def unlock(
    ttl: Annotated[str, typer.Option(help="Lock after this long in any case (90s, 15m, 8h).")
                   ] = "8h",
    idle: Annotated[str, typer.Option(help="Lock after this long without use.")] = "1h",
    allow_withdrawal: Annotated[bool, typer.Option(
        "--allow-withdrawal", help="Let the agent sign withdrawal requests for keys that "
        "have withdrawal access (off by default).")] = False,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """Ask for the passphrase once and start a background agent for this vault.

    Until it locks, every other command (and `run`) uses the agent instead of asking again.
    """
    from vault.agent import start_agent
    from vault.core import Vault
    from vault.store import read_head

    ttl_s, idle_s = parse_duration(ttl), parse_duration(idle)
    acc = Access(vault, passphrase_file, passphrase_command)
    path = acc.path
    read_head(path, 8)
    running = agent_or_none(path)
    if running is not None:
        with running:
            state = running.status()
        typer.echo(f"already unlocked: {path} (locks in "
                   f"{format_duration(float(state['expires_in']))})")
        return
    passphrase = read_passphrase(acc.sources)
    with output.status("unlocking…"), Vault.open(path, passphrase) as opened:
        info = start_agent(path, bytes(opened._data_key), ttl=ttl_s, idle=idle_s,
                           allow_withdrawal=allow_withdrawal)
    until = time.strftime("%H:%M", time.localtime(time.time() + ttl_s))
    typer.echo(f"unlocked {path} until {until} (idle lock after {format_duration(idle_s)}; "
               f"agent pid {info.pid})")


@app.command()
def lock(vault: VaultOpt = None) -> None:
    """Wipe the keys in the agent and stop it."""
    acc = Access(vault, None, None)
    client = agent_or_none(acc.path)
    if client is None:
        typer.echo("already locked")
        return
    with client:
        client.lock()
    typer.echo("locked")


@app.command()
def status(
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    vault: VaultOpt = None,
) -> None:
    """Say whether the vault is unlocked. Exit 0 when unlocked, 5 when locked."""
    path = Access(vault, None, None).path
    client = agent_or_none(path)
    state: dict[str, Any] = {"unlocked": False, "vault": str(path)}
    if client is not None:
        from vault.agent import socket_path_for

        with client:
            state = {**client.status(), "unlocked": True,
                     "socket": str(socket_path_for(path))}
    if json_:
        output.json_out(state)
    elif state["unlocked"]:
        typer.echo(f"unlocked: {path}\nlocks in {format_duration(state['expires_in'])} "
                   f"(idle: {format_duration(state['idle_expires_in'])}), agent pid "
                   f"{state['pid']}")
    else:
        typer.echo(f"locked: {path}")
    if not state["unlocked"]:
        raise typer.Exit(5)

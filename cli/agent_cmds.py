"""Commands about the agent: unlock, lock, status."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import output
from .common import Access, PassCmdOpt, PassFileOpt, VaultOpt, agent_or_none
from .durations import format_duration, parse_duration
from .passphrase import read_passphrase

if TYPE_CHECKING:
    from botvault.agent import AgentClient

app = typer.Typer()


@app.command()
def unlock(
    ttl: Annotated[Optional[str], typer.Option(  # noqa: UP045 -- Typer needs Optional
        help="Lock after this long in any case (90s, 15m, 8h) [default: 8h].",
        show_default=False)] = None,
    idle: Annotated[Optional[str], typer.Option(  # noqa: UP045 -- Typer needs Optional
        help="Lock after this long without use [default: 1h].", show_default=False)] = None,
    allow_withdrawal: Annotated[bool, typer.Option(
        "--allow-withdrawal", help="Let the agent sign withdrawal requests for keys that "
        "have withdrawal access (off by default).")] = False,
    sign_only: Annotated[bool, typer.Option(
        "--sign-only", help="An agent that hands out no secret and no data key and signs "
        "only requests a grant authenticates (for `botvault gateway`); run, env and show "
        "--reveal then ask for the passphrase.")] = False,
    vault: VaultOpt = None,
    passphrase_file: PassFileOpt = None,
    passphrase_command: PassCmdOpt = None,
) -> None:
    """Ask for the passphrase once and start a background agent for this vault.

    Until it locks, every other command (and `run`) uses the agent instead of asking again.
    Already unlocked: says so; with --ttl/--idle it extends the agent (never shortens it).
    """
    from botvault.agent import start_agent
    from botvault.core import Vault
    from botvault.store import read_head

    ttl_s, idle_s = parse_duration(ttl or "8h"), parse_duration(idle or "1h")
    acc = Access(vault, passphrase_file, passphrase_command)
    path = acc.path
    read_head(path, 8)
    running = agent_or_none(path)
    if running is not None:
        wanted = (ttl_s if ttl else None, idle_s if idle else None)
        _report_running(running, path, wanted if ttl or idle else None)
        return
    passphrase = read_passphrase(acc.sources)
    with output.status("unlocking…"), Vault.open(path, passphrase) as opened:
        info = start_agent(path, bytes(opened._data_key), ttl=ttl_s, idle=idle_s,
                           allow_withdrawal=allow_withdrawal, sign_only=sign_only)
    until = time.strftime("%H:%M", time.localtime(time.time() + ttl_s))
    typer.echo(f"unlocked {path} until {until} (idle lock after {format_duration(idle_s)}; "
               f"agent pid {info.pid}{'; sign-only' if sign_only else ''})")


def _report_running(client: AgentClient, path: Path,
                    extend: tuple[float | None, float | None] | None) -> None:
    with client:
        state = client.extend(*extend) if extend else client.status()
    verb = "extended" if extend else "already unlocked"
    typer.echo(f"{verb}: {path} (locks in {format_duration(float(state['expires_in']))}, "
               f"idle lock after {format_duration(float(state['idle_expires_in']))})")


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
        from botvault.agent import socket_path_for

        with client:
            state = {**client.status(), "unlocked": True,
                     "socket": str(socket_path_for(path))}
    if json_:
        output.json_out(state)
    elif state["unlocked"]:
        typer.echo(f"unlocked: {path}\nlocks in {format_duration(state['expires_in'])} "
                   f"(idle: {format_duration(state['idle_expires_in'])}), agent pid "
                   f"{state['pid']}{' (sign-only)' if state.get('sign_only') else ''}")
    else:
        typer.echo(f"locked: {path}")
    if not state["unlocked"]:
        raise typer.Exit(5)

"""Commands about the agent: unlock, lock, status."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import output
from .access import access
from .durations import format_duration, format_moment, parse_duration

if TYPE_CHECKING:
    from botvault.agent import AgentClient

app = typer.Typer()


@app.command()
def unlock(
    ctx: typer.Context,
    ttl: Annotated[Optional[str], typer.Option(  # noqa: UP045 -- Typer needs Optional
        help="Lock after this long in any case (90s, 15m, 8h).", show_default="8h",
        metavar="DURATION")] = None,
    idle: Annotated[Optional[str], typer.Option(  # noqa: UP045 -- Typer needs Optional
        help="Lock after this long without use.", show_default="1h",
        metavar="DURATION")] = None,
    allow_withdrawal: Annotated[bool, typer.Option(
        "--allow-withdrawal", help="Let the agent sign withdrawal requests for keys that "
        "have withdrawal access (off by default).")] = False,
    sign_only: Annotated[bool, typer.Option(
        "--sign-only", help="An agent that hands out no secret and no data key and signs "
        "only requests a grant authenticates (for `botvault gateway`); run, env and show "
        "--reveal then ask for the passphrase.")] = False,
) -> None:
    """Ask for the passphrase once and start a background agent for this vault.

    Until it locks, every other command (and `run`) uses the agent instead of asking again.
    Already unlocked: says so; with --ttl/--idle it extends the agent (never shortens it).
    """
    from botvault.session import running_agent

    ttl_s, idle_s = parse_duration(ttl or "8h"), parse_duration(idle or "1h")
    session = access(ctx).session()
    path = session.path
    session.check_exists()
    running = running_agent(path)
    if running is not None:
        wanted = (ttl_s if ttl else None, idle_s if idle else None)
        _report_running(running, path, wanted if ttl or idle else None, session.extend_agent)
        return
    info = session.start_agent(ttl=ttl_s, idle=idle_s, allow_withdrawal=allow_withdrawal,
                               sign_only=sign_only)
    until = format_moment(time.time() + ttl_s)
    typer.echo(f"unlocked {path} until {until} (idle lock after {format_duration(idle_s)}; "
               f"agent pid {info.pid}{'; sign-only' if sign_only else ''})")


def _report_running(client: AgentClient, path: Path,
                    extend: tuple[float | None, float | None] | None,
                    extender: Callable[[AgentClient, float | None, float | None],
                                       dict[str, Any]]) -> None:
    with client:
        state = extender(client, *extend) if extend else client.status()
    now = time.time()
    expires, idle = float(state["expires_in"]), float(state["idle_expires_in"])
    when = f"in {format_duration(expires)}, at {format_moment(now + expires, now)}"
    if extend is None:
        verb = "already unlocked"
    elif extend[0] is not None and expires > extend[0] + 2:
        # The agent never shortens its life: say so rather than "extended".
        verb = (f"lock time unchanged (the agent already lives longer than --ttl "
                f"{format_duration(extend[0])})")
    else:
        verb = "extended"
    typer.echo(f"{verb}: {path} (locks {when}; idle lock after {format_duration(idle)})")


@app.command()
def lock(ctx: typer.Context) -> None:
    """Wipe the keys in the agent and stop it."""
    from botvault.session import lock_agent

    typer.echo("locked" if lock_agent(access(ctx).path) else "already locked")


@app.command()
def status(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Say whether the vault is unlocked. Exit 0 when unlocked, 5 when locked."""
    from botvault.session import agent_state

    path = access(ctx).path
    state: dict[str, Any] = agent_state(path) or {"unlocked": False, "vault": str(path)}
    if json_:
        output.json_out(state)
    elif state["unlocked"]:
        expires = float(state["expires_in"])
        typer.echo(f"unlocked: {path}\nlocks in {format_duration(expires)} (at "
                   f"{format_moment(time.time() + expires)}; idle: "
                   f"{format_duration(state['idle_expires_in'])}), agent pid {state['pid']}"
                   f"{' (sign-only)' if state.get('sign_only') else ''}")
    else:
        typer.echo(f"locked: {path}")
    if not state["unlocked"]:
        raise typer.Exit(5)

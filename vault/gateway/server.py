"""Running a gateway in the foreground: connect to the agent, listen, serve until a signal."""

from __future__ import annotations

import asyncio
import errno
import gc
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from ..agent import connect, socket_path_for
from ..errors import ConflictError
from ..fast_json import use_orjson
from . import event_loop
from .agent_link import AsyncAgentGrants
from .agent_watch import WatchedAgent
from .app import Gateway, build_app
from .audit_writer import AuditProcess
from .config import GatewayConfig
from .etcd_coord import EtcdCoordinator
from .governor import Governor
from .tls import server_context

__all__ = ["make_runner", "serve"]

# Request line and each header: Kraken requests are small; a longer one is refused (400).
_MAX_LINE = 8190


def _freeze_startup_objects() -> None:
    """What start-up built (modules, aiohttp, the CLI) lives as long as the process: the
    collector's full passes skip it from now on, so they stay short (the gateway's p99)."""
    gc.collect()
    gc.freeze()


def make_runner(gateway: Gateway) -> web.AppRunner:
    """The server's settings. `keepalive_timeout` also bounds how long a connection may sit
    idle or dribble an unfinished request line and headers before it is closed, so slow
    clients cannot pile up connections; a request in progress is never cut."""
    return web.AppRunner(build_app(gateway), access_log=None, handler_cancellation=False,
                         max_line_size=_MAX_LINE, max_field_size=_MAX_LINE,
                         keepalive_timeout=gateway.config.idle_timeout)


def _bound(config: GatewayConfig) -> socket.socket:
    """The listening socket, bound before anything else starts, so that a taken address is
    one error naming it (ConflictError, exit 9), with nothing started to clean up."""
    listen = config.listen
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        taken = exc.errno == errno.EADDRINUSE
        raise ConflictError(
            f"cannot listen on {listen.host}:{listen.port}: "
            + ("the address is already in use" if taken else (exc.strerror or str(exc))),
            hint="another program (a gateway already running?) listens there; stop it or "
                 "pick another address with --listen HOST:PORT (port 0: any free one)"
            if taken else "pick another address with --listen HOST:PORT") from None
    return sock


async def _serve(gateway: Gateway, announce: Callable[[str], None],
                 sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
    runner = make_runner(gateway)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Ctrl-C or SIGTERM from here on stops the gateway in order (audit lines received are
    # written by the audit child, which ends at the end of its input), never a traceback.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await runner.setup()
        site = web.SockSite(runner, sock, ssl_context=tls)
        await site.start()
        _freeze_startup_objects()
        port = sock.getsockname()[1]
        host = f"[{gateway.config.listen.host}]" if sock.family == socket.AF_INET6 \
            else gateway.config.listen.host
        announce(f"{'https' if tls else 'http'}://{host}:{port}")
        await stopped.wait()
    finally:
        await runner.cleanup()
        gateway.agent.close()  # on this loop: its connections belong to it


def serve(config: GatewayConfig, vault_path: Path | None,
          announce: Callable[[str], None]) -> None:
    """Serve until SIGINT/SIGTERM. Needs an unlocked agent for the vault (LockedError else).

    `announce` is told the URL once the gateway listens (port 0 picks a free one).
    """
    use_orjson()  # the agent's frames; a long-lived process: its import pays for itself
    # Refused before anything listens: a TLS key that is not private, or not the cert's.
    tls = server_context(config.tls_cert, config.tls_key) \
        if config.tls_cert is not None and config.tls_key is not None else None
    probe = connect(vault_path)  # LockedError here, before listening, when locked
    with probe:
        agent_vault = Path(str(probe.status()["vault"]))
    sock = _bound(config)
    try:
        agent = WatchedAgent(AsyncAgentGrants(socket_path_for(vault_path)))
        governor = Governor(config.tier)
        coordinator = None if config.etcd is None else \
            EtcdCoordinator(config.etcd, agent_vault, governor)
        gateway = Gateway(config, agent, agent_vault, audit=AuditProcess(agent_vault),
                          governor=governor, coordinator=coordinator)
        event_loop.run(_serve(gateway, announce, sock, tls))
    finally:
        sock.close()

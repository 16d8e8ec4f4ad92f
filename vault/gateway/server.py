"""Running a gateway in the foreground: connect to the agent, listen, serve until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from ..agent import connect, socket_path_for
from ..fast_json import use_orjson
from ..rate_limits import FileRateState, Governor
from . import event_loop
from .agent_link import AsyncAgentGrants
from .agent_watch import WatchedAgent
from .app import Gateway
from .audit_writer import AuditProcess
from .config import GatewayConfig
from .http_server import Server
from .listening import AcceptErrors, listening_socket, open_files_for
from .tls import server_context

__all__ = ["serve", "serving"]

_SHUTDOWN_S = 60.0  # the longest a stop waits for requests in progress


def _freeze_startup_objects() -> None:
    """What start-up built (modules, the CLI) lives as long as the process: the collector's
    full passes skip it from now on, so they stay short (the gateway's p99)."""
    gc.collect()
    gc.freeze()


@contextlib.asynccontextmanager
async def serving(gateway: Gateway, sock: socket.socket,
                  tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """The gateway started and serving on the listening `sock` until the block ends; then
    no new connection is taken, the open ones are closed, and the gateway stops (its audit
    lines written). The idle timeout also bounds how long a connection may dribble an
    unfinished request line and headers, so slow clients cannot pile up connections; a
    request in progress is never cut."""
    config = gateway.config
    server = Server(gateway.handle, max_body=config.max_body, body_timeout=config.body_timeout,
                    idle_timeout=config.idle_timeout,
                    max_connections=open_files_for(config.max_connections))
    await gateway.start()
    try:
        listener = await asyncio.get_running_loop().create_server(server, sock=sock, ssl=tls)
        try:
            yield server
        finally:
            listener.close()
            # As aiohttp's server did: requests in progress are answered first (their audit
            # lines written), then the connections are closed.
            await server.drain(_SHUTDOWN_S)
    finally:
        await gateway.stop()


async def _serve(gateway: Gateway, announce: Callable[[str], None],
                 sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Ctrl-C or SIGTERM from here on stops the gateway in order (audit lines received are
    # written by the audit child, which ends at the end of its input), never a traceback.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    loop.set_exception_handler(AcceptErrors(loop).handle)
    try:
        async with serving(gateway, sock, tls):
            _freeze_startup_objects()
            announce(_url(sock, tls is not None))
            await stopped.wait()
    finally:
        gateway.agent.close()  # on this loop: its connections belong to it


def _url(sock: socket.socket, tls: bool) -> str:
    # The socket's own address: under socket activation it is systemd's, not --listen's.
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if sock.family == socket.AF_INET6 else \
        f"{scheme}://{host}:{port}"


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
    # systemd's socket (its variables removed before any child could inherit them), else
    # one bound to --listen.
    sock = listening_socket(config)
    try:
        agent = WatchedAgent(AsyncAgentGrants(socket_path_for(vault_path),
                                              vault_path=agent_vault))
        # One rate counter per key across every process that signs for it on this machine.
        governor = Governor(config.tier, state=FileRateState(agent_vault))
        coordinator = None
        if config.etcd is not None:
            # Imported here: etcd's client brings aiohttp, which a gateway without --etcd
            # never loads.
            from .etcd_coord import EtcdCoordinator

            coordinator = EtcdCoordinator(config.etcd, agent_vault, governor)
        audit = AuditProcess(agent_vault, keep_days=config.audit_keep_days,
                             max_bytes=int(config.audit_max_mb * 1024 * 1024))
        gateway = Gateway(config, agent, agent_vault, audit=audit, governor=governor,
                          coordinator=coordinator)
        event_loop.run(_serve(gateway, announce, sock, tls))
    finally:
        sock.close()

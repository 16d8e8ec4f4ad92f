"""The gateway's listening socket and its limits.

- **Socket activation**: under systemd (a `.socket` unit beside the `.service`), the socket
  is created and held by systemd, which hands it over as file descriptor 3 with
  `LISTEN_PID`/`LISTEN_FDS` set. The port then stays held while the gateway restarts, so no
  other local user can bind it in between and collect the bots' requests.
- **Connections** are capped in total: one over the cap is closed as soon as it is
  accepted, and the open-files limit is raised to what the cap needs, so a flood of idle
  connections can neither exhaust descriptors nor starve the bots already connected.
- **Accept errors** (out of descriptors despite all that) are reported once per interval
  with a count, not once per attempt.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import resource
import socket
import sys
import time
from typing import Any

from ..errors import ConflictError, InvalidInputError
from .config import GatewayConfig

__all__ = ["SD_LISTEN_FDS_START", "AcceptErrors", "inherited_socket", "listening_socket",
           "open_files_for"]

SD_LISTEN_FDS_START = 3  # sd_listen_fds(3): the first descriptor systemd passes
_SPARE_FILES = 256  # agent links, the audit pipe, upstream connections, the interpreter's own
_REPORT_EVERY = 60.0


def inherited_socket() -> socket.socket | None:
    """The listening socket systemd passed (socket activation), or None when there is none.

    As sd_listen_fds(3) does: the variables count only when `LISTEN_PID` is this process
    (else they were meant for a parent); they are removed either way so that no child
    takes them for its own; the descriptor is made close-on-exec."""
    pid, count = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if pid is None or count is None or pid != str(os.getpid()):
        return None
    if count != "1":
        raise InvalidInputError(f"systemd passed {count!r} sockets; the gateway takes one",
                                hint="give the gateway's .socket unit one ListenStream=")
    os.set_inheritable(SD_LISTEN_FDS_START, False)
    try:
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    except OSError:
        raise InvalidInputError("systemd's socket (descriptor 3) is not a socket") from None
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET,
                                                              socket.AF_INET6) or not listening:
        sock.detach()
        raise InvalidInputError("systemd's socket is not a listening TCP socket",
                                hint="the .socket unit needs ListenStream=127.0.0.1:PORT")
    return sock


def listening_socket(config: GatewayConfig) -> socket.socket:
    """systemd's socket when activated (its address checked as --listen is), else a new
    one bound to `config.listen`."""
    sock = inherited_socket()
    if sock is not None:
        host = sock.getsockname()[0]
        if not ipaddress.ip_address(host).is_loopback and not config.allow_remote:
            sock.detach()
            raise InvalidInputError(
                f"systemd's socket listens on {host}, not loopback",
                hint="pass --allow-remote to serve elsewhere (see SECURITY.md)")
        sock.setblocking(False)
        return sock
    return _bound(config)


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



def open_files_for(connections: int) -> int:
    """Raise the open-files limit to what `connections` need (up to the hard limit) and
    return the connection cap that fits under it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + _SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return connections
    fits = max(1, soft - _SPARE_FILES)
    print(f"botvault: warning: the open-files limit ({soft}) holds {fits} connections, "
          f"not {connections}", file=sys.stderr)
    return fits


class AcceptErrors:
    """The loop's exception handler: accept errors counted and reported once per interval
    (asyncio pauses accepting for a moment after each); everything else as asyncio does."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *,
                 every: float = _REPORT_EVERY) -> None:
        self._loop = loop
        self._every = every
        self._count = 0
        self._reported = -float("inf")

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not str(context.get("message", "")).startswith("socket.accept()"):
            loop.default_exception_handler(context)
            return
        self._count += 1
        now = time.monotonic()
        if now - self._reported >= self._every:
            exc = context.get("exception")
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "error"
            print(f"botvault: warning: {self._count} connection(s) could not be accepted "
                  f"({why}) in the last {self._every:g} s", file=sys.stderr)
            self._count, self._reported = 0, now

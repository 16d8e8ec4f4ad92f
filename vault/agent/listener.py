"""The agent's listening socket: bound 0600 in its checked directory, replacing a stale one
left by a killed agent, and held with an exclusive lock so that one agent serves a vault."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from .. import private
from ..errors import AlreadyExistsError, InsecurePermissionsError
from . import socket_location
from .protocol import AgentError

__all__ = ["Bound", "bind_listener", "close_fds", "release_agent_lock"]

_PROBE_TIMEOUT = 1.0
# Connections waiting to be accepted; the kernel caps it at net.core.somaxconn (4096 on
# current kernels). A full queue makes a client's connect fail at once (EAGAIN on a unix
# socket), so it must hold a whole burst (tests/test_agent_burst.py).
_BACKLOG = 1024


@dataclass
class Bound:
    """A listening socket at `path`, and the lock that makes it the only agent there."""

    listener: socket.socket
    path: Path
    identity: tuple[int, int]  # (st_dev, st_ino) of the socket file we created
    lock_fd: int


def _already_unlocked(socket_path: Path) -> AlreadyExistsError:
    return AlreadyExistsError(f"the vault is already unlocked: an agent is serving {socket_path}",
                              hint="use it, or run botvault lock first")


def _answers(socket_path: Path) -> bool:
    """True when something accepts connections at `socket_path` (a live agent)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_PROBE_TIMEOUT)
    try:
        with socket_location.unix_address(socket_path) as address:
            probe.connect(address)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except TimeoutError:
        return True  # a full backlog: alive but busy
    finally:
        probe.close()
    return True


def _lock_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".lock")


def _take_agent_lock(socket_path: Path) -> int:
    """An exclusive flock held for the agent's life: one agent per socket, with no race
    between two that start at once (both would see a stale socket and remove it).

    The agent removes its lock file when it locks. A starter that opened the file just
    before that removal holds a lock on a name that no longer exists, so it checks that
    the path still names the file it locked, and otherwise tries again.
    """
    path = _lock_path(socket_path)
    for _ in range(10):
        fd = private.open_private_file(path, os.O_RDWR | os.O_CREAT, "the agent lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _already_unlocked(socket_path) from None
        if _same_file(path, os.fstat(fd)):
            return fd
        os.close(fd)
    raise AgentError(f"could not take the agent lock {path}")


def _same_file(path: Path, st: os.stat_result) -> bool:
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        return False
    return (current.st_dev, current.st_ino) == (st.st_dev, st.st_ino)


def release_agent_lock(socket_path: Path, fd: int) -> None:
    """Remove the lock file while still holding it (see `_take_agent_lock`), then unlock."""
    with contextlib.suppress(OSError):
        if _same_file(_lock_path(socket_path), os.fstat(fd)):
            os.unlink(_lock_path(socket_path))
    close_fds(fd)


def _remove_stale(socket_path: Path) -> None:
    try:
        st = os.lstat(socket_path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InsecurePermissionsError(f"{socket_path} exists and is not a socket",
                                       hint=f"remove it if it is yours: rm {socket_path}")
    if _answers(socket_path):
        raise _already_unlocked(socket_path)
    # Left by an agent that was killed (SIGKILL, power loss): nothing listens on it.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)


def bind_listener(socket_path: Path) -> Bound:
    """Bind the agent socket (0600, in its checked 0700 dir), replacing a stale one."""
    socket_location.check_socket_dir(socket_path, create=True)
    lock_fd = _take_agent_lock(socket_path)
    try:
        _remove_stale(socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The umask makes the socket 0600 from its creation: no window where it is wider.
        previous = os.umask(0o177)
        try:
            with socket_location.unix_address(socket_path) as address:
                listener.bind(address)
        except OSError as exc:
            listener.close()
            if exc.errno == errno.EADDRINUSE:
                raise _already_unlocked(socket_path) from None
            raise
        finally:
            os.umask(previous)
        os.chmod(socket_path, 0o600)
        st = os.lstat(socket_path)
        listener.listen(_BACKLOG)
        listener.setblocking(False)
    except BaseException:
        os.close(lock_fd)
        raise
    return Bound(listener, socket_path, (st.st_dev, st.st_ino), lock_fd)


def close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)

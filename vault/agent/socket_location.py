"""Where the agent's socket lives, and the checks made on it before every use.

One agent per vault path: the socket's name is a hash of the vault's absolute path, in a
private directory (`$XDG_RUNTIME_DIR/botvault` when that runtime dir is usable, else
`agent/` in the user's state directory, e.g. `~/.local/state/botvault/agent`: never a name
under /tmp that another user could create first). The directory must be ours, not a
symlink, and closed to everyone else, or it is refused, as gpg-agent refuses its socket
dir: anyone who could write there could put a socket of their own in place of the agent's.
`BOTVAULT_AGENT_SOCKET` overrides the socket path, as SSH_AUTH_SOCK does for ssh-agent.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .. import private
from ..errors import BusyError, InsecurePermissionsError, InvalidInputError, LockedError
from ..vault_path import resolve_vault_path

__all__ = [
    "BUSY_HINT",
    "ENV_SOCKET",
    "LOCKED_HINT",
    "busy_error",
    "busy_wait",
    "check_private_dir",
    "check_socket_dir",
    "check_socket_file",
    "connect_when_free",
    "ensure_private_dir",
    "runtime_dir",
    "socket_path_for",
    "unix_address",
]

ENV_SOCKET = "BOTVAULT_AGENT_SOCKET"
LOCKED_HINT = "run: botvault unlock"
_APP = "botvault"
# Where the fallback directory goes when no runtime dir is usable; tests point it elsewhere.
# None: the user's state directory (see `_fallback_dir`).
_FALLBACK_ROOT: Path | None = None
# sun_path holds 108 bytes on Linux, 104 on macOS, both including the terminating NUL.
_SUN_PATH_MAX = 107 if sys.platform.startswith("linux") else 103
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _usable_runtime_dir(value: str | None) -> Path | None:
    """$XDG_RUNTIME_DIR when it is a real directory of ours that no one else can enter."""
    if not value or not os.path.isabs(value):
        return None
    try:
        st = os.lstat(value)
    except OSError:
        return None
    if private.dir_problem(Path(value), st, "the runtime directory", private.DirRule.CLOSED):
        return None
    return Path(value)


def _fallback_dir() -> Path:
    """Where sockets go without a runtime dir: under the user's own state directory.

    Never a fixed name under /tmp: another user could create /tmp/botvault-UID first, and
    every later `unlock` would be refused (or, were it not checked, talk to their socket).
    """
    if _FALLBACK_ROOT is not None:
        return _FALLBACK_ROOT / "agent"
    from platformdirs import user_state_dir

    return Path(user_state_dir(_APP, appauthor=False)) / "agent"


def runtime_dir() -> Path:
    """The directory for agent sockets (not created here; see `ensure_private_dir`)."""
    base = _usable_runtime_dir(os.environ.get("XDG_RUNTIME_DIR"))
    if base is not None:
        return base / _APP
    return _fallback_dir()


def socket_path_for(vault_path: str | os.PathLike[str] | None = None) -> Path:
    """The agent socket for a vault: $BOTVAULT_AGENT_SOCKET, else derived from its path."""
    override = os.environ.get(ENV_SOCKET)
    if override:
        return Path(os.path.abspath(override))
    target = resolve_vault_path(vault_path)
    digest = hashlib.sha256(os.fsencode(target)).hexdigest()[:20]
    return runtime_dir() / f"agent-{digest}.sock"


def _is_default_location(socket_path: Path) -> bool:
    return socket_path.parent == runtime_dir()


def ensure_private_dir(directory: Path) -> None:
    """Create `directory` (and missing parents) as 0700 whatever the umask, then check it."""
    try:
        private.make_private_dirs(directory)
    except OSError as exc:
        raise InsecurePermissionsError(
            f"cannot create the agent directory {directory}: {exc.strerror}",
            hint=f"set XDG_RUNTIME_DIR to a private directory, or {ENV_SOCKET}") from None
    # An existing dir is never loosened or "fixed", only refused. Its parent is checked
    # too: whoever can write there can swap the whole directory.
    _check_dir(directory.parent, private.DirRule.PARENT)
    check_private_dir(directory)


def _check_dir(directory: Path, rule: private.DirRule) -> None:
    try:
        private.check_dir(directory, "the agent directory", rule)
    except FileNotFoundError:
        raise LockedError(f"no agent directory at {directory}", hint=LOCKED_HINT) from None


def check_private_dir(directory: Path) -> None:
    """Ours, a real directory, no access for group or others; else InsecurePermissionsError."""
    _check_dir(directory, private.DirRule.CLOSED)


def check_socket_dir(socket_path: Path, *, create: bool = False) -> None:
    """The checks every use of `socket_path` makes on its directory (and creates it)."""
    directory = socket_path.parent
    if _is_default_location(socket_path):
        if create:
            ensure_private_dir(directory)
        else:
            check_private_dir(directory)
    else:
        # A chosen socket's directory: no one but us (or root) may replace what is in it.
        _check_dir(directory, private.DirRule.PARENT)


def check_socket_file(socket_path: Path) -> None:
    """A socket of ours, not a symlink, closed to others. LockedError when there is none."""
    try:
        st = os.lstat(socket_path)
    except FileNotFoundError:
        raise LockedError("the vault is locked (no agent is running)", hint=LOCKED_HINT) from None
    private.refuse(private.socket_problem(socket_path, st, "the agent socket"))


BUSY_HINT = ("many clients are connecting to the agent at once; try again in a moment "
             "(nothing is locked)")
_BUSY_FIRST_WAIT, _BUSY_MAX_WAIT = 0.001, 0.05


def busy_wait(attempt: int) -> float:
    """Seconds to wait before connect attempt `attempt` + 1 while the queue is full."""
    return float(min(_BUSY_FIRST_WAIT * 2 ** min(attempt, 16), _BUSY_MAX_WAIT))


def busy_error(socket_path: Path, timeout: float) -> BusyError:
    return BusyError(f"the agent at {socket_path} is busy: its queue of new connections "
                     f"stayed full for {timeout:g} s", hint=BUSY_HINT)


def connect_when_free(sock: socket.socket, socket_path: Path, timeout: float) -> None:
    """Connect `sock` to the agent, waiting while its listen queue is full.

    A unix socket's connect fails at once with EAGAIN when the listener's queue is full (a
    burst of clients): that is "busy", not "locked", so it is tried again with a short
    backoff until `timeout`, then BusyError. Other errors propagate (OSError)."""
    deadline = time.monotonic() + timeout
    with unix_address(socket_path) as address:
        for attempt in range(1 << 16):
            try:
                sock.connect(address)
            except BlockingIOError:
                wait = busy_wait(attempt)
                if time.monotonic() + wait > deadline:
                    break
                time.sleep(wait)
            else:
                return
    raise busy_error(socket_path, timeout)


@contextlib.contextmanager
def unix_address(socket_path: Path) -> Iterator[str]:
    """An address for bind/connect, even for a path longer than sun_path can hold.

    Runtime dirs under long temporary paths overflow the 108 bytes of sun_path. On Linux
    the directory is then reached through /proc/self/fd of a descriptor opened on it
    (O_NOFOLLOW: a symlink swapped in is not followed), which is the same directory.
    """
    text = os.fspath(socket_path)
    if len(os.fsencode(text)) <= _SUN_PATH_MAX:
        yield text
        return
    if not sys.platform.startswith("linux"):
        raise InvalidInputError(f"the agent socket path {text} is too long for a unix socket",
                                hint=f"set {ENV_SOCKET} to a shorter path")
    try:
        fd = os.open(socket_path.parent, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        raise LockedError("the vault is locked (no agent is running)", hint=LOCKED_HINT) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InsecurePermissionsError(f"{socket_path.parent} is a symlink") from None
        raise
    try:
        short = f"/proc/self/fd/{fd}/{socket_path.name}"
        if len(short) > _SUN_PATH_MAX:
            raise InvalidInputError(f"the agent socket name {socket_path.name} is too long")
        yield short
    finally:
        os.close(fd)

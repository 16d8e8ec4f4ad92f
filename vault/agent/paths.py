"""Where the agent's socket lives, and the checks made on it before every use.

One agent per vault path: the socket's name is a hash of the vault's absolute path, in a
private directory (`$XDG_RUNTIME_DIR/botvault` when that runtime dir is usable, else
`/tmp/botvault-UID`). The directory must be ours, not a symlink, and closed to everyone else,
or it is refused, as gpg-agent refuses its socket dir: anyone who could write there could
put a socket of their own in place of the agent's. `BOTVAULT_AGENT_SOCKET` overrides the
socket path, as SSH_AUTH_SOCK does for ssh-agent.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import InsecurePermissionsError, InvalidInputError, LockedError
from ..paths import resolve_vault_path

__all__ = [
    "ENV_SOCKET",
    "LOCKED_HINT",
    "check_private_dir",
    "check_socket_dir",
    "check_socket_file",
    "ensure_private_dir",
    "runtime_dir",
    "socket_path_for",
    "unix_address",
]

ENV_SOCKET = "BOTVAULT_AGENT_SOCKET"
LOCKED_HINT = "run: botvault unlock"
_APP = "botvault"
# Where the fallback directory goes when no runtime dir is usable; tests point it elsewhere.
_FALLBACK_ROOT = Path("/tmp")  # noqa: S108 -- a private 0700 subdirectory, checked on use
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
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return Path(value)


def runtime_dir() -> Path:
    """The directory for agent sockets (not created here; see `ensure_private_dir`)."""
    base = _usable_runtime_dir(os.environ.get("XDG_RUNTIME_DIR"))
    if base is not None:
        return base / _APP
    return _FALLBACK_ROOT / f"{_APP}-{os.getuid()}"


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
    """Create `directory` as 0700 (whatever the umask) if missing, then check it."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass  # checked below: an existing dir is never loosened or "fixed", only refused
    else:
        os.chmod(directory, 0o700)
    check_private_dir(directory)


def check_private_dir(directory: Path) -> None:
    """Ours, a real directory, no access for group or others; else InsecurePermissionsError."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise LockedError(f"no agent directory at {directory}", hint=LOCKED_HINT) from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise InsecurePermissionsError(f"the agent directory {directory} is a symlink or not a "
                                       "directory", hint=f"remove it: rm {directory}")
    if st.st_uid != os.getuid():
        raise InsecurePermissionsError(
            f"the agent directory {directory} is owned by uid {st.st_uid}, not by you",
            hint="someone else may be impersonating the agent; remove that directory")
    if st.st_mode & 0o077:
        raise InsecurePermissionsError(
            f"the agent directory {directory} is accessible by other users "
            f"(mode {stat.S_IMODE(st.st_mode):o})", hint=f"run: chmod 700 {directory}")


def _check_override_dir(directory: Path) -> None:
    """A chosen socket's directory: no one but us (or root) may replace what is in it."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise LockedError(f"no directory {directory} for the agent socket",
                          hint=LOCKED_HINT) from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise InsecurePermissionsError(f"{directory} is a symlink or not a directory")
    if st.st_uid not in (os.getuid(), 0):
        raise InsecurePermissionsError(f"{directory} is owned by uid {st.st_uid}, not by you")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise InsecurePermissionsError(
            f"{directory} can be written by other users, who could replace the agent socket",
            hint=f"run: chmod 700 {directory}, or choose another {ENV_SOCKET}")


def check_socket_dir(socket_path: Path, *, create: bool = False) -> None:
    """The checks every use of `socket_path` makes on its directory (and creates it)."""
    directory = socket_path.parent
    if _is_default_location(socket_path):
        if create:
            ensure_private_dir(directory)
        else:
            check_private_dir(directory)
    else:
        _check_override_dir(directory)


def check_socket_file(socket_path: Path) -> None:
    """A socket of ours, not a symlink, closed to others. LockedError when there is none."""
    try:
        st = os.lstat(socket_path)
    except FileNotFoundError:
        raise LockedError("the vault is locked (no agent is running)", hint=LOCKED_HINT) from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISSOCK(st.st_mode):
        raise InsecurePermissionsError(f"{socket_path} is not a socket (or is a symlink)",
                                       hint=f"remove it: rm {socket_path}")
    if st.st_uid != os.getuid():
        raise InsecurePermissionsError(f"the agent socket {socket_path} is owned by uid "
                                       f"{st.st_uid}, not by you")
    if st.st_mode & 0o077:
        raise InsecurePermissionsError(
            f"the agent socket {socket_path} is accessible by other users "
            f"(mode {stat.S_IMODE(st.st_mode):o})", hint=f"run: chmod 600 {socket_path}")


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

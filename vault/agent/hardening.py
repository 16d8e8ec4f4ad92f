"""Process hardening for the agent, and who is on the other end of a unix socket.

The agent holds the data key for hours, so a core dump or a debugger attaching as the same
user (e.g. a compromised bot calling ptrace) must not be able to read it: core dumps are
turned off (`RLIMIT_CORE` 0) and, on Linux, the process is made non-dumpable
(`PR_SET_DUMPABLE` 0), which also forbids ptrace by non-root processes of the same uid and
makes /proc/PID/{mem,environ,...} root-only.
"""

from __future__ import annotations

import functools
import os
import resource
import socket
import struct
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

__all__ = ["disable_core_dumps", "is_dumpable", "peer_allowed", "peer_pid", "peer_uid"]

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4
_UCRED = struct.Struct("3i")  # struct ucred: pid_t pid; uid_t uid; gid_t gid


@functools.cache
def _libc() -> ctypes.CDLL:
    # ctypes is imported here, not at the top: clients (e.g. `botvault run`) import this
    # module for peer_uid, which on Linux needs no ctypes, and ctypes costs ~7 ms to load.
    # dlopen(NULL): the symbols already loaded, libc among them. find_library would run
    # ldconfig in a subprocess.
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def disable_core_dumps() -> None:
    """No core file, and on Linux no ptrace or /proc/PID/mem access by the same uid."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        prctl = _libc().prctl
        if prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            err = _errno()
            raise OSError(err, f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(err)}")


def is_dumpable() -> bool | None:
    """This process's dumpable flag (Linux), or None where there is no such flag."""
    if not sys.platform.startswith("linux"):
        return None
    return bool(_libc().prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected unix socket.

    Taken by the kernel at connect time (SO_PEERCRED on Linux, getpeereid elsewhere), so
    the peer cannot lie about it.
    """
    if sys.platform.startswith("linux"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        uid: int = _UCRED.unpack(raw)[1]
        return uid
    import ctypes

    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    if _libc().getpeereid(sock.fileno(), ctypes.byref(uid), ctypes.byref(gid)) != 0:
        err = _errno()
        raise OSError(err, f"getpeereid failed: {os.strerror(err)}")
    return uid.value


def peer_pid(sock: socket.socket) -> int:
    """The pid of the connected peer (Linux), else -1: connections are then counted as one
    peer's for the per-client limit."""
    if not sys.platform.startswith("linux"):
        return -1
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid: int = _UCRED.unpack(raw)[0]
    except (OSError, struct.error):
        return -1
    return pid


def peer_allowed(sock: socket.socket) -> bool:
    """True only when the peer runs as our own uid. The one place the agent decides this."""
    try:
        return peer_uid(sock) == os.getuid()
    except (OSError, ValueError, struct.error):
        return False  # unknown peer: refused

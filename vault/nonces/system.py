"""What the operating system provides to the nonce store: durable syncs and a boot id.

The defaults of NonceStore's `sync` and `boot_id` arguments; tests inject their own.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path


def default_sync(fd: int) -> None:
    """Make everything written to `fd` durable (F_FULLFSYNC on macOS: fsync alone is not)."""
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is not None:
        try:
            fcntl.fcntl(fd, full)
        except OSError:
            pass  # not every file system has it; plain fsync below is the best left
        else:
            return
    os.fsync(fd)


def default_boot_id() -> str:
    """A string that changes at every boot: Linux's boot_id, macOS's boot session."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        if sys.platform != "darwin":
            raise
    return _darwin_boot_session()


def _darwin_boot_session() -> str:
    # Imported here: macOS only, and ctypes would add to every start-up on Linux.
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    for name in (b"kern.bootsessionuuid", b"kern.boottime"):
        buf = ctypes.create_string_buffer(64)
        size = ctypes.c_size_t(len(buf))
        if libc.sysctlbyname(name, buf, ctypes.byref(size), None, ctypes.c_size_t(0)) == 0:
            return name.decode() + ":" + buf.raw[:size.value].hex()
    raise OSError(ctypes.get_errno(), "cannot read the boot session from sysctl")

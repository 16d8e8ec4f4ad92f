"""Where a passphrase comes from, and the one rule for each source.

Every flag that names a passphrase file (`--passphrase-file`, `--new-passphrase-file`,
`--export-passphrase-file`, `--import-passphrase-file`) goes through `read_passphrase_file`,
and `--passphrase-command` through `run_passphrase_command`, so the rules cannot drift:

- a file has exactly one trailing newline (LF or CRLF) removed and nothing else; a file
  with further lines, a NUL or non-UTF-8 bytes is refused (exit 2), one that others can
  read or write, or that is not yours, with exit 7; a special file (FIFO, device) with 8;
- a command runs with a timeout (`BOTVAULT_PASSPHRASE_TIMEOUT` seconds, default 30); its
  first output line is the passphrase; a timeout, a failure or non-UTF-8 output is an error
  that names the command, never its output;
- standard input (`--passphrase-stdin` only) gives one line, its newline removed;
- an empty passphrase is refused everywhere.

Messages never contain the passphrase or any part of it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from . import private
from .errors import FormatError, InvalidInputError, LockedError

__all__ = ["DEFAULT_TIMEOUT", "MAX_PASSPHRASE_BYTES", "command_timeout", "passphrase_from_stdin",
           "read_passphrase_file", "run_passphrase_command"]

DEFAULT_TIMEOUT = 30.0
# Far above any passphrase a person types or a helper prints; bounds what is read.
MAX_PASSPHRASE_BYTES = 4096
_TIMEOUT_VAR = "BOTVAULT_PASSPHRASE_TIMEOUT"


def _one_line(raw: bytes, what: str) -> str:
    """The passphrase in `raw`: one trailing LF or CRLF removed, nothing else changed."""
    if len(raw) > MAX_PASSPHRASE_BYTES:
        raise InvalidInputError(f"{what} is longer than {MAX_PASSPHRASE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{what} is not valid UTF-8",
                                hint="save it as UTF-8 text") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if "\n" in text or "\r" in text:
        raise InvalidInputError(f"{what} holds more than one line",
                                hint="put the passphrase alone on one line, with at most one "
                                     "newline after it")
    if "\0" in text:
        raise InvalidInputError(f"{what} holds a NUL byte")
    if not text:
        raise InvalidInputError(f"{what} is empty")
    return text


def read_passphrase_file(path: Path, what: str = "passphrase file") -> str:
    """A passphrase file: private to you (botvault.private, the one rule: as ssh wants a
    private key; never a symlink, FIFO or device), one line, UTF-8."""
    label = f"{what} {path}"
    try:
        fd = private.open_private_file(path, os.O_RDONLY, what)
    except FileNotFoundError:
        raise InvalidInputError(f"{label} does not exist") from None
    except IsADirectoryError:
        raise FormatError(f"{label} is not a regular file") from None
    except PermissionError as exc:
        raise InvalidInputError(f"{label} cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_PASSPHRASE_BYTES + 1)
    return _one_line(raw, label)


def command_timeout() -> float:
    """Seconds a passphrase command may take: BOTVAULT_PASSPHRASE_TIMEOUT, default 30."""
    value = os.environ.get(_TIMEOUT_VAR)
    if value is None or value == "":
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 24 * 3600:
        raise InvalidInputError(f"{_TIMEOUT_VAR} must be a number of seconds above 0 "
                                f"(at most 86400), not {value!r}")
    return seconds


def run_passphrase_command(command: str) -> str:
    """The first output line of a helper (systemd-ask-password, pass, a keyring CLI)."""
    import shlex
    import subprocess

    timeout = command_timeout()
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise InvalidInputError(f"cannot parse the passphrase command {command!r}: {exc}"
                                ) from None
    if not argv:
        raise InvalidInputError("the passphrase command is empty")
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LockedError(f"the passphrase command {command!r} did not finish within "
                          f"{timeout:g} s", hint=f"set {_TIMEOUT_VAR} (seconds) to wait longer"
                          ) from None
    except OSError as exc:
        raise InvalidInputError(f"could not run the passphrase command {command!r}: "
                                f"{exc.strerror or type(exc).__name__}") from None
    if done.returncode != 0:
        raise LockedError(f"the passphrase command {command!r} exited with status "
                          f"{done.returncode}")
    out = done.stdout
    first = out.split(b"\n", 1)[0]
    try:
        first.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"the passphrase command {command!r} printed bytes that are "
                                "not UTF-8") from None
    if not first.strip(b"\r"):
        raise InvalidInputError(f"the passphrase command {command!r} printed no passphrase")
    return _one_line(first + b"\n", f"the output of the passphrase command {command!r}")


def _read_line(stream: BinaryIO, limit: int) -> bytes:
    """One line, and not a byte more: from a real descriptor byte by byte, so that what
    follows the passphrase stays on standard input for the next reader (a bot that `run`
    starts, or `passwd`'s second line); a buffered read would swallow it."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return stream.readline(limit)
    line = bytearray()
    while len(line) < limit:
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
        if byte == b"\n":
            break
    return bytes(line)


def passphrase_from_stdin(stream: BinaryIO, what: str = "passphrase") -> str:
    """One line of standard input (`--passphrase-stdin`): its LF or CRLF removed."""
    line = _read_line(stream, MAX_PASSPHRASE_BYTES + 2)
    if not line:
        raise LockedError(f"no {what}: standard input is empty",
                          hint="pass --passphrase-file or --passphrase-command, or run "
                               "`botvault unlock` first")
    if not line.endswith(b"\n") and len(line) > MAX_PASSPHRASE_BYTES:
        raise InvalidInputError(f"the {what} on standard input is longer than "
                                f"{MAX_PASSPHRASE_BYTES} bytes")
    return _one_line(line, f"the {what} on standard input")

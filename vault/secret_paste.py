"""A secret pasted at a hidden terminal prompt: all of the paste, however it arrives.

A private key copied from a web page often arrives as several lines (the browser or the
terminal wrapped it). A line-by-line prompt (getpass) takes the first line and leaves the rest
in the terminal's input, where the next prompt reads it or the terminal drops it: half a secret
stored without a word. So this reader takes the terminal out of line mode (echo off, signals
kept, so Ctrl-C still interrupts) and reads until input goes quiet: after a line break, more
input within QUIET_SECONDS is the rest of the same paste (a paste arrives in one write or in
chunks milliseconds apart; a person pressing Enter does not type again that fast). Line breaks
are kept in the text returned, so the exchange check decides: whitespace of a wrap removed
with a warning for Kraken, a multi-line `generic` secret refused (exchanges.validation).

Input still pending from earlier (the tail of a paste into a previous prompt, keys typed
ahead) is dropped before the prompt is shown (`drain`), so nothing of one answer reaches the
next question.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from collections.abc import Iterator
from typing import TextIO

from .errors import InvalidInputError

__all__ = ["MAX_PASTE_BYTES", "QUIET_SECONDS", "check_pasted_secret", "drain",
           "read_hidden_paste"]

# Chunks of one paste come a few milliseconds apart even over ssh; a person's next key after
# Enter comes far later. 0.3 s is unnoticeable after Enter and long enough for a slow link.
QUIET_SECONDS = 0.3
MAX_PASTE_BYTES = 64 * 1024
_ERASE = (0x7F, 0x08)  # DEL, BS: erase one character, as the terminal's line mode would
_KILL = 0x15  # Ctrl-U: erase the line
_EOF = 0x04  # Ctrl-D


def check_pasted_secret(exchange: str, text: str) -> str:
    """The secret as it would be stored from a paste (InvalidInputError if it cannot be).

    Kraken: the line breaks of a wrap are whitespace the exchange check removes (and the
    store warns about, counting them). `generic`: the secret is stored exactly as given and
    its format is unknown, so a paste over several lines cannot be told from a wrap and is
    refused rather than guessed at."""
    from .entry_rules import check_secret
    from .exchanges.profiles import KRAKEN

    if exchange not in KRAKEN and ("\n" in text or "\r" in text):
        lines = len(text.splitlines())
        raise InvalidInputError(
            f"the secret came as {lines} lines; a generic secret is stored exactly as given, "
            "so a paste broken over lines is refused rather than guessed at",
            hint="paste it again as one line (copy it from where it is not wrapped), or pipe "
                 "it in with --secret-stdin")
    return check_secret(exchange, text)


def drain(fd: int | None = None) -> None:
    """Drop input the terminal holds but nobody has read yet (no terminal: nothing)."""
    import termios

    if fd is None:
        fd = _stdin_fd()
        if fd is None:
            return
    with contextlib.suppress(termios.error, OSError):
        termios.tcflush(fd, termios.TCIFLUSH)


def _stdin_fd() -> int | None:
    stream = sys.stdin
    try:
        if stream is None or stream.closed or not stream.isatty():
            return None
        return stream.fileno()
    except (OSError, ValueError):
        return None


def read_hidden_paste(prompt: str, *, quiet: float = QUIET_SECONDS) -> str:
    """Show `prompt` on the terminal and return what is pasted or typed, echo off, line
    breaks inside kept as "\\n" and the final Enter removed. Needs a terminal on stdin."""
    fd = _stdin_fd()
    if fd is None:
        raise InvalidInputError("no terminal to ask for the secret",
                                hint="pipe it in with --secret-stdin")
    with _tty_out() as out, _raw_no_echo(fd):
        out.write(prompt)
        out.flush()
        try:
            data = _read_until_quiet(fd, quiet)
        finally:
            out.write("\n")
            out.flush()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("the pasted secret is not valid UTF-8") from None
    return text.rstrip("\n")


@contextlib.contextmanager
def _tty_out() -> Iterator[TextIO]:
    """The terminal itself for the prompt (never a piped stdout); stderr without one."""
    try:
        tty = open("/dev/tty", "w", encoding="utf-8")  # noqa: SIM115 -- closed below
    except OSError:
        yield sys.stderr
        return
    try:
        yield tty
    finally:
        tty.close()


@contextlib.contextmanager
def _raw_no_echo(fd: int) -> Iterator[None]:
    import termios

    old = termios.tcgetattr(fd)
    new = list(old)
    new[3] = new[3] & ~(termios.ECHO | termios.ICANON | termios.ECHONL | termios.IEXTEN)
    cc = list(old[6])
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    new[6] = cc
    # TCSAFLUSH: what was typed or pasted before the prompt is dropped, not read as the answer.
    termios.tcsetattr(fd, termios.TCSAFLUSH, new)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _read_until_quiet(fd: int, quiet: float) -> bytes:
    buf = bytearray()
    line_ended = False
    while True:
        # Before the first line break, wait as long as the person needs; after one, only
        # as long as a paste's next chunk could take.
        ready, _, _ = select.select([fd], [], [], quiet if line_ended else None)
        if not ready:
            return bytes(buf)
        chunk = os.read(fd, 4096)
        if not chunk:
            return bytes(buf)
        for byte in chunk:
            if byte == _EOF and not buf:
                return b""
            _edit(buf, byte)
        line_ended = chunk[-1] in (0x0D, 0x0A)
        if len(buf) > MAX_PASTE_BYTES:
            raise InvalidInputError(f"more than {MAX_PASTE_BYTES // 1024} KiB were pasted; "
                                    "a secret is far shorter",
                                    hint="paste the private key alone")


def _edit(buf: bytearray, byte: int) -> None:
    """One byte of input applied as the terminal's line mode would (Enter, erase, kill)."""
    if byte in (0x0D, 0x0A):
        buf.append(0x0A)
    elif byte in _ERASE:
        if buf and buf[-1] != 0x0A:
            del buf[-1]
    elif byte == _KILL:
        while buf and buf[-1] != 0x0A:
            del buf[-1]
    elif byte != _EOF:
        buf.append(byte)

"""The agent's wire format: length-prefixed JSON frames, and errors carried across them.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding one
object; at most 64 KiB. Requests are `{"op": NAME, ...arguments}`; responses are
`{"ok": true, ...}` or `{"ok": false, "error": {"type", "message", "hint"}}`, where `type` is
the name of a `vault.errors` class that the client raises again. Anything that is not a
well-formed frame is a `ProtocolError`, and the side that reads it closes that connection.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

from ..errors import (
    AlreadyExistsError,
    AuthenticationError,
    ConflictError,
    FormatError,
    GrantError,
    InsecurePermissionsError,
    InvalidInputError,
    LockedError,
    NotFoundError,
    ScopeError,
    VaultError,
)

__all__ = [
    "MAX_FRAME",
    "OPS",
    "AgentError",
    "ConnectionClosedError",
    "FrameReader",
    "FrameTooLargeError",
    "ProtocolError",
    "decode_payload",
    "encode_frame",
    "error_response",
    "raise_for_error",
]

MAX_FRAME = 64 * 1024
OPS = frozenset({"status", "list", "get", "data_key", "nonce", "sign", "sign_challenge",
                 "lock", "grant_resolve", "grant_sign"})
_HEADER = struct.Struct(">I")
_MAX_MESSAGE = 2000
_RECV_SIZE = MAX_FRAME + _HEADER.size


class AgentError(VaultError):
    """The agent failed, timed out, or answered something this client does not understand."""

    exit_code = 1


class ProtocolError(Exception):
    """A malformed frame: the connection it came on is closed."""


class FrameTooLargeError(ProtocolError):
    """A frame announced more than MAX_FRAME bytes."""


class ConnectionClosedError(ProtocolError):
    """The peer closed the connection (cleanly between frames, or in the middle of one)."""

    def __init__(self, message: str, *, mid_frame: bool) -> None:
        super().__init__(message)
        self.mid_frame = mid_frame


# Looked up by name, never evaluated: an unknown name becomes AgentError.
_ERROR_TYPES: Mapping[str, type[VaultError]] = {cls.__name__: cls for cls in (
    AgentError, AlreadyExistsError, AuthenticationError, ConflictError, FormatError,
    GrantError, InsecurePermissionsError, InvalidInputError, LockedError, NotFoundError, ScopeError,
)}


def encode_frame(message: Mapping[str, Any]) -> bytes:
    """One frame. ensure_ascii: any str, even a lone surrogate, survives the round trip."""
    payload = json.dumps(message, separators=(",", ":")).encode("ascii")
    if len(payload) > MAX_FRAME:
        raise InvalidInputError(f"the message is {len(payload)} bytes; an agent frame holds "
                                f"at most {MAX_FRAME}")
    return _HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> dict[str, Any]:
    """The JSON object in a frame, or ProtocolError (never anything else)."""
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: 64 KiB of "[[[[..." nests deeper than the decoder's stack allows.
        raise ProtocolError("the frame is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("the frame is not a JSON object")
    return value


class FrameReader:
    """Reads frames from one socket, keeping bytes that arrived early for the next frame.

    `wait` bounds the wait for a frame to begin (None: forever, as the agent waits for a
    client's next request); once a frame has begun, the rest must arrive within
    `frame_timeout`, so a peer that stops mid-frame cannot hold the reader.
    """

    def __init__(self, sock: socket.socket, *, wait: float | None, frame_timeout: float) -> None:
        self._sock = sock
        self._wait = wait
        self._frame_timeout = frame_timeout
        self._buffer = bytearray()
        self._timeout: float | None = sock.gettimeout()

    def read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self._frame_timeout if self._buffer else None
        while len(self._buffer) < _HEADER.size:
            deadline = self._fill(deadline)
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > MAX_FRAME:
            raise FrameTooLargeError(f"a frame of {length} bytes is over the {MAX_FRAME} limit")
        end = _HEADER.size + length
        while len(self._buffer) < end:
            deadline = self._fill(deadline)
        payload = bytes(self._buffer[_HEADER.size:end])
        del self._buffer[:end]
        return decode_payload(payload)

    def _fill(self, deadline: float | None) -> float:
        """Receive more bytes; return the deadline for the rest of the frame."""
        if deadline is None:
            self._set_timeout(self._wait)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("the frame was not completed in time")
            self._set_timeout(left)
        try:
            chunk = self._sock.recv(_RECV_SIZE)
        except TimeoutError:
            if deadline is None:
                raise
            raise ProtocolError("the frame was not completed in time") from None
        if not chunk:
            raise ConnectionClosedError("the connection was closed",
                                        mid_frame=bool(self._buffer))
        self._buffer += chunk
        return deadline if deadline is not None else time.monotonic() + self._frame_timeout

    def _set_timeout(self, timeout: float | None) -> None:
        # settimeout is a syscall; the hot path (whole frame in one recv) makes none.
        if timeout != self._timeout:
            self._sock.settimeout(timeout)
            self._timeout = timeout


def error_response(exc: VaultError) -> dict[str, Any]:
    """The response that carries `exc` to the client. Messages never hold secrets."""
    name = type(exc).__name__
    error = {"type": name if name in _ERROR_TYPES else "AgentError",
             "message": exc.message, "hint": exc.hint}
    if isinstance(exc, GrantError):
        error["reason"] = exc.reason
    return {"ok": False, "error": error}


def raise_for_error(response: dict[str, Any]) -> dict[str, Any]:
    """`response` when it says ok; else raise the error it carries as its own class."""
    ok = response.get("ok")
    if ok is True:
        return response
    error = response.get("error")
    if ok is not False or not isinstance(error, dict):
        raise AgentError("the agent sent a response this client does not understand")
    cls = _ERROR_TYPES.get(str(error.get("type")), AgentError)
    message = error.get("message")
    hint = error.get("hint")
    text = message[:_MAX_MESSAGE] if isinstance(message, str) else "the agent reported an error"
    if cls is GrantError:
        reason = error.get("reason")
        if reason not in GrantError.REASONS:
            raise AgentError("the agent sent a grant error this client does not understand")
        raise GrantError(str(reason), text, hint=hint[:_MAX_MESSAGE] if isinstance(hint, str)
                         else None)
    raise cls(text, hint=hint[:_MAX_MESSAGE] if isinstance(hint, str) else None)

"""The agent's wire format: length-prefixed JSON frames, and errors carried across them.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding one
object. A request holds at most 64 KiB (`MAX_FRAME`: what the agent reads from anyone who
connects), an answer at most 4 MiB (`MAX_ANSWER`: an entry whose note and labels are
non-ASCII comes close to 64 KiB on its own once escaped). `list` answers come in pages of
at most `LIST_PAGE` bytes, so that a vault of any size lists.

Requests are `{"op": NAME, ...arguments}`; responses are `{"ok": true, ...}` or
`{"ok": false, "error": {"type", "message", "hint"}}`, where `type` is the name of a
`botvault.errors` class that the client raises again. Anything that is not a well-formed frame
is a `ProtocolError`, and the side that reads it closes that connection.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import fast_json
from ..errors import (
    AgentError,
    AlreadyExistsError,
    AuthenticationError,
    ConflictError,
    FormatError,
    GrantError,
    InsecurePermissionsError,
    InvalidInputError,
    LockedError,
    NotFoundError,
    PolicyError,
    ScopeError,
    VaultError,
)

__all__ = [
    "LIST_PAGE",
    "MAX_ANSWER",
    "MAX_FRAME",
    "AgentError",
    "ConnectionClosedError",
    "FrameReader",
    "FrameTooLargeError",
    "GrantSigned",
    "GrantTarget",
    "ProtocolError",
    "Signed",
    "decode_payload",
    "encode_frame",
    "error_response",
    "grant_signed",
    "grant_target",
    "nonce_answer_frame",
    "raise_for_error",
    "send_frame",
    "use_kernel_timeouts",
]


class _Frozen:
    """A small immutable record, written out by hand: a frozen dataclass costs about 0.6 ms
    to build at import, and this module is on `botvault run`'s path (bench/bench_run.py).
    As a frozen dataclass: equal when of the same type with equal fields, hashed by its
    fields (a dict field makes it unhashable), FrozenInstanceError on assignment."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or not isinstance(other, _Frozen):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:  # as a frozen dataclass's: TypeError when a field is a dict
        return hash(self._fields())

    def __setattr__(self, name: str, value: object) -> None:
        import dataclasses

        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        import dataclasses

        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


def _set(record: _Frozen, **values: object) -> None:
    for name, value in values.items():
        object.__setattr__(record, name, value)


class Signed(_Frozen):
    """A request ready to send: the body (nonce inserted for Spot) and the auth headers. The
    agent's `sign` answer and the library's own signing (`signing.sign_request`) are both
    this one type; it lives here, with the wire format, so a client loads no signing code."""

    __slots__ = ("body", "headers", "nonce")
    body: str
    headers: dict[str, str]
    nonce: int

    def __init__(self, body: str, headers: dict[str, str], nonce: int) -> None:
        _set(self, body=body, headers=headers, nonce=nonce)

MAX_FRAME = 64 * 1024
MAX_ANSWER = 4 * 1024 * 1024
LIST_PAGE = 1024 * 1024
_HEADER = struct.Struct(">I")
_MAX_MESSAGE = 2000
_RECV_SIZE = MAX_FRAME + _HEADER.size  # per recv call; larger frames take several
_TIMEVAL = struct.Struct("@ll")  # struct timeval: tv_sec, tv_usec (a long on macOS too)
_LONGEST_WAIT = 10.0**8  # seconds; a kernel timeout must fit its time_t
_KEPT_FRAMES, _KEPT_SIZE = 8, 512  # what a FrameReader remembers (see its `keep`): 1024
# connections hold about 8 MiB of it at most (a bot asks for one or two entries on one)


class ProtocolError(Exception):
    """A malformed frame: the connection it came on is closed."""


class FrameTooLargeError(ProtocolError):
    """A frame announced more than the reader's limit (MAX_FRAME for requests)."""


class ConnectionClosedError(ProtocolError):
    """The peer closed the connection (cleanly between frames, or in the middle of one)."""

    def __init__(self, message: str, *, mid_frame: bool) -> None:
        super().__init__(message)
        self.mid_frame = mid_frame


# Looked up by name, never evaluated: an unknown name becomes AgentError.
_ERROR_TYPES: Mapping[str, type[VaultError]] = {cls.__name__: cls for cls in (
    AgentError, AlreadyExistsError, AuthenticationError, ConflictError, FormatError,
    GrantError, InsecurePermissionsError, InvalidInputError, LockedError, NotFoundError, ScopeError,
    PolicyError,
)}


def encode_frame(message: Mapping[str, Any], limit: int = MAX_FRAME) -> bytes:
    """One frame (JSON: `fast_json.dumps`)."""
    payload = fast_json.dumps(message)
    if len(payload) > limit:
        raise InvalidInputError(f"the message is {len(payload)} bytes; an agent frame holds "
                                f"at most {limit}")
    return _HEADER.pack(len(payload)) + payload


_NONCE_ANSWER = b'{"ok":true,"start":%d,"stop":%d,"step":1}'
_pack_length = _HEADER.pack


def nonce_answer_frame(nonces: range) -> bytes:
    """The frame of a `nonce` answer (step 1): the very bytes `encode_frame` makes of
    {"ok": True, "start": ..., "stop": ..., "step": 1}, without a dict or a JSON encoder
    (every request of a bot asks for a nonce: bench/bench_agent.py)."""
    payload = _NONCE_ANSWER % (nonces.start, nonces.stop)
    return _pack_length(len(payload)) + payload


def decode_payload(payload: bytes) -> dict[str, Any]:
    """The JSON object in a frame, or ProtocolError (never anything else)."""
    try:
        value = fast_json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: 64 KiB of "[[[[..." nests deeper than the decoder's stack allows.
        raise ProtocolError("the frame is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("the frame is not a JSON object")
    return value


def send_frame(sock: socket.socket, frame: bytes) -> None:
    """`sock.sendall(frame)`; on a socket with kernel timeouts (`use_kernel_timeouts`), a
    send that times out raises TimeoutError, as one with a Python timeout does.

    On a socket with a Python timeout, a frame that fits in the socket's buffer (nearly all)
    goes in one write(): there sendall polls before every send."""
    sent = 0
    if sock.gettimeout() is not None:  # then the descriptor is non-blocking: write() waits
        with contextlib.suppress(BlockingIOError):  # for nothing
            sent = os.write(sock.fileno(), frame)
    if sent < len(frame):
        try:
            sock.sendall(frame[sent:] if sent else frame)
        except BlockingIOError:  # SO_SNDTIMEO ran out
            raise TimeoutError("the frame could not be sent in time") from None


def use_kernel_timeouts(sock: socket.socket, *, send: float | None) -> None:
    """Make `sock` blocking, with its sends bounded by the kernel (SO_SNDTIMEO; None: not
    bounded). A `FrameReader` bounds its receives the same way (SO_RCVTIMEO).

    Why not `settimeout`: CPython then polls before every recv and send, a system call and a
    round of the GIL more on each; the kernel's timeouts cost nothing until they fire."""
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(send))


def _timeval(seconds: float | None) -> bytes:
    """A `struct timeval` for SO_RCVTIMEO / SO_SNDTIMEO: None waits forever (zero), any
    other wait at least a microsecond (zero would mean forever)."""
    if seconds is None:
        return _TIMEVAL.pack(0, 0)
    micros = max(1, math.ceil(min(seconds, _LONGEST_WAIT) * 1_000_000))
    return _TIMEVAL.pack(*divmod(micros, 1_000_000))


class FrameReader:
    """Reads frames from one socket, keeping bytes that arrived early for the next frame.

    `wait` bounds the wait for a frame to begin (None: forever); once a frame has begun, the
    rest must arrive within `frame_timeout`, so a peer that stops mid-frame cannot hold the
    reader. Both are TimeoutError when they run out (a frame left unfinished: ProtocolError).
    The reader makes the socket blocking and has the kernel bound each wait (SO_RCVTIMEO, see
    `use_kernel_timeouts`): the usual frame costs one recv() and no other system call.
    """

    def __init__(self, sock: socket.socket, *, wait: float | None, frame_timeout: float,
                 limit: int = MAX_FRAME,
                 keep: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self._sock = sock
        self._limit = limit
        # `keep`: which decoded frames to remember, by their bytes, and hand out again for
        # the same bytes without decoding (a bot sends one nonce request over and over:
        # bench/bench_agent.py). Only for frames the caller never changes.
        self._keep = keep
        self._kept: dict[bytes, dict[str, Any]] = {}
        self._wait = wait
        self._frame_timeout = frame_timeout
        self._buffer = bytearray()
        if sock.gettimeout() is not None:
            sock.settimeout(None)
        self._timeout: float | bool | None = False  # not set yet (None: forever)

    def read(self) -> dict[str, Any]:
        if self._buffer:
            return self._assemble()
        # The usual case: a whole frame arrives in one recv and is decoded as it came.
        if self._timeout is not self._wait:
            self._set_timeout(self._wait)
        try:
            chunk = self._sock.recv(_RECV_SIZE)
        except BlockingIOError:  # SO_RCVTIMEO ran out: no frame began in time
            raise TimeoutError("no frame arrived in time") from None
        if not chunk:
            raise ConnectionClosedError("the connection was closed", mid_frame=False)
        if len(chunk) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(chunk)
            if length > self._limit:
                raise FrameTooLargeError(f"a frame of {length} bytes is over the "
                                         f"{self._limit} limit")
            if len(chunk) == _HEADER.size + length:
                if self._kept and (value := self._kept.get(chunk)) is not None:
                    return value  # (a client keeps none: no hash of its answers)
                try:  # decode_payload, inlined: this is every request's path
                    value = fast_json.loads(chunk[_HEADER.size:])
                except (UnicodeDecodeError, ValueError, RecursionError):
                    raise ProtocolError("the frame is not UTF-8 JSON") from None
                if type(value) is not dict:
                    raise ProtocolError("the frame is not a JSON object")
                if self._keep is not None and len(chunk) <= _KEPT_SIZE and \
                        len(self._kept) < _KEPT_FRAMES and self._keep(value):
                    self._kept[chunk] = value
                return value
        self._buffer += chunk
        return self._assemble()

    def _assemble(self) -> dict[str, Any]:
        """The frame whose first bytes are in the buffer, the rest read as they come."""
        deadline = time.monotonic() + self._frame_timeout
        while len(self._buffer) < _HEADER.size:
            self._fill(deadline)
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > self._limit:
            raise FrameTooLargeError(f"a frame of {length} bytes is over the {self._limit} "
                                     "limit")
        end = _HEADER.size + length
        while len(self._buffer) < end:
            self._fill(deadline)
        payload = bytes(self._buffer[_HEADER.size:end])
        del self._buffer[:end]
        return decode_payload(payload)

    def _fill(self, deadline: float) -> None:
        """Receive more bytes of a frame that must be whole by `deadline`."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProtocolError("the frame was not completed in time")
        self._set_timeout(left)
        try:
            chunk = self._sock.recv(_RECV_SIZE)
        except BlockingIOError:
            raise ProtocolError("the frame was not completed in time") from None
        if not chunk:
            raise ConnectionClosedError("the connection was closed",
                                        mid_frame=bool(self._buffer))
        self._buffer += chunk

    def _set_timeout(self, timeout: float | None) -> None:
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
        self._timeout = timeout


def error_response(exc: VaultError) -> dict[str, Any]:
    """The response that carries `exc` to the client. Messages never hold secrets."""
    # The nearest class the client knows, so a subclass keeps its exit code (a
    # RollbackError arrives as the AuthenticationError it is: exit 3).
    name = next((c.__name__ for c in type(exc).__mro__ if c.__name__ in _ERROR_TYPES),
                "AgentError")
    error = {"type": name, "message": exc.message, "hint": exc.hint}
    if isinstance(exc, GrantError):
        error["reason"] = exc.reason
    if isinstance(exc, PolicyError):
        error["rule"] = exc.rule
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
    if cls is PolicyError:
        rule = error.get("rule")
        raise PolicyError(rule[:40] if isinstance(rule, str) else "unknown", text,
                          hint=hint[:_MAX_MESSAGE] if isinstance(hint, str) else None)
    raise cls(text, hint=hint[:_MAX_MESSAGE] if isinstance(hint, str) else None)


# -- answers that more than one client reads (the sync AgentClient, the gateway's link) ----

class GrantTarget(_Frozen):
    """What a grant key stands for: the bot, its entry and the real key's identity."""

    __slots__ = ("grant", "entry", "exchange", "key_id", "expires_at", "policy")  # noqa: RUF023 - repr's order
    grant: str
    entry: str
    exchange: str
    key_id: str  # botvault.nonces.key_id(exchange, the entry's real api key)
    expires_at: float | None  # wall clock, seconds since the epoch
    # The grant's trading policy as JSON (botvault.trading_policy.Policy.to_doc), or None.
    # The agent enforces it; the gateway reads it only to know when pair aliases matter.
    policy: dict[str, Any] | None

    def __init__(self, grant: str, entry: str, exchange: str, key_id: str,
                 expires_at: float | None = None, policy: dict[str, Any] | None = None
                 ) -> None:
        _set(self, grant=grant, entry=entry, exchange=exchange, key_id=key_id,
             expires_at=expires_at, policy=policy)


def grant_target(answer: Mapping[str, Any]) -> GrantTarget:
    """The agent's answer to `grant_resolve`; AgentError when it is not well formed."""
    fields = [answer.get(k) for k in ("grant", "entry", "exchange", "key_id")]
    expires = answer.get("expires_at")
    if not all(isinstance(f, str) for f in fields) or not (
            expires is None or (isinstance(expires, (int, float))
                                and not isinstance(expires, bool))):
        raise AgentError("the agent sent a malformed grant")
    grant, entry, exchange, key = (str(f) for f in fields)
    policy = answer.get("policy")
    if policy is not None and not isinstance(policy, dict):
        raise AgentError("the agent sent a malformed grant")
    return GrantTarget(grant, entry, exchange, key, None if expires is None else float(expires),
                       policy)


class GrantSigned(_Frozen):
    """A grant-authenticated request signed with the real key: send `body` with `headers`."""

    __slots__ = ("body", "headers", "entry", "grant", "nonce")  # noqa: RUF023 - repr's order
    body: str
    headers: dict[str, str]
    entry: str
    grant: str
    nonce: int

    def __init__(self, body: str, headers: dict[str, str], entry: str, grant: str,
                 nonce: int) -> None:
        _set(self, body=body, headers=headers, entry=entry, grant=grant, nonce=nonce)

    def __repr__(self) -> str:  # the headers carry the real key's signature
        return f"GrantSigned(grant={self.grant!r}, entry={self.entry!r}, nonce={self.nonce})"


def grant_signed(answer: Mapping[str, Any]) -> GrantSigned:
    """The agent's answer to `grant_sign`; AgentError when it is not well formed."""
    headers, body = answer.get("headers"), answer.get("body")
    entry, grant, nonce = answer.get("entry"), answer.get("grant"), answer.get("nonce")
    if not isinstance(headers, dict) or not isinstance(body, str) or \
            not isinstance(entry, str) or not isinstance(grant, str) or \
            isinstance(nonce, bool) or not isinstance(nonce, int):
        raise AgentError("the agent sent a malformed signed request")
    return GrantSigned(body, {str(k): str(v) for k, v in headers.items()}, entry, grant, nonce)

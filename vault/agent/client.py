"""Talking to the agent: `connect()` and `AgentClient`.

A client keeps one connection open and reuses it for every call (reconnecting once if the
agent closed it), so a call costs one round trip on a unix socket. It never hangs: connecting
and every call have timeouts. It raises `LockedError` when no agent serves the vault, and
re-raises the agent's errors as their own `vault.errors` classes.

The client also checks, on every connection, that the socket and its directory are private
and that the process answering runs as our own uid: a socket planted by someone else is
refused before anything is sent.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import errno
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..entries import Entry, check_name
from ..errors import (
    BusyError,
    InsecurePermissionsError,
    InvalidInputError,
    LockedError,
    NotFoundError,
)
from ..fast_json import use_orjson
from ..secret import Secret
from . import hardening, socket_location
from .protocol import (
    MAX_ANSWER,
    AgentError,
    ConnectionClosedError,
    FrameReader,
    GrantSigned,
    GrantTarget,
    ProtocolError,
    Signed,
    encode_frame,
    grant_signed,
    grant_target,
    raise_for_error,
    use_kernel_timeouts,
)

if TYPE_CHECKING:  # loaded on use: `run` never takes a key's order
    from ..request_lock import KeyOrder

# request_lock.DEFAULT_TIMEOUT, which tests/test_request_lock.py holds equal to this.
_ORDER_TIMEOUT = 30.0

__all__ = ["CALL_TIMEOUT", "CONNECT_TIMEOUT", "FALLBACK_TIMEOUT", "AgentClient", "Credentials",
           "GrantSigned", "GrantTarget", "SignedRequest", "connect"]

CONNECT_TIMEOUT = 2.0
# Calls after which a client reads and writes frames with orjson, when installed (same
# meaning, see protocol._dumps): a bot's client, not `run`'s one or two calls.
_FAST_JSON_AFTER = 16
CALL_TIMEOUT = 10.0
# How long a command that could use the passphrase instead waits for the agent's answer
# (a stopped or wedged agent accepts connections and never answers).
FALLBACK_TIMEOUT = 2.0
_NONCE_FRAMES = 64  # nonce requests (entry, count) whose frames a client keeps
_GONE = (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTDIR)
_LIST_ATTEMPTS = 5


# One read model of an entry: the agent hands out the library's own `Entry`. The name stays
# for code written against earlier versions.
Credentials = Entry


# One model of a signed request: the agent's answer is the signing module's `Signed`. The
# name stays for code written against earlier versions.
SignedRequest = Signed


def _nonces_in(answer: dict[str, Any], count: int) -> range:
    start, stop, step = answer.get("start"), answer.get("stop"), answer.get("step", 1)
    if type(start) is not int or type(stop) is not int or type(step) is not int or \
            step < 1 or len(nonces := range(start, stop, step)) != count:
        raise AgentError("the agent sent malformed nonces")
    return nonces


class _Connection:
    """One connected socket and the reader of its frames."""

    def __init__(self, sock: socket.socket, call_timeout: float) -> None:
        self.sock = sock
        self.reader = FrameReader(sock, wait=call_timeout, frame_timeout=call_timeout,
                                  limit=MAX_ANSWER)


def _refuse_foreign_peer(sock: socket.socket, socket_path: Path) -> None:
    # The answering process must be ours: a socket file can be replaced, its peer
    # credentials cannot be forged.
    if not hardening.peer_allowed(sock):
        raise InsecurePermissionsError(
            f"the process serving {socket_path} does not run as your user",
            hint="someone may be impersonating the agent; check that directory")


def _open_connection(socket_path: Path, connect_timeout: float, call_timeout: float
                     ) -> _Connection:
    socket_location.check_socket_dir(socket_path)
    socket_location.check_socket_file(socket_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(connect_timeout)
        socket_location.connect_when_free(sock, socket_path, connect_timeout)
        _refuse_foreign_peer(sock, socket_path)
        use_kernel_timeouts(sock, send=call_timeout)
    except OSError as exc:
        sock.close()
        if exc.errno in _GONE:
            raise LockedError("the vault is locked (the agent is gone; its socket is stale)",
                              hint=socket_location.LOCKED_HINT) from None
        if isinstance(exc, TimeoutError):
            raise LockedError(f"the agent at {socket_path} did not answer within "
                              f"{connect_timeout:g} s", hint=socket_location.LOCKED_HINT) from None
        raise LockedError(f"cannot reach the agent: {exc.strerror or exc}",
                          hint=socket_location.LOCKED_HINT) from None
    except BaseException:
        sock.close()
        raise
    return _Connection(sock, call_timeout)


class AgentClient:
    """A connection to the agent at `socket_path`. Thread-safe: calls are serialised."""

    def __init__(self, socket_path: Path, *, connect_timeout: float = CONNECT_TIMEOUT,
                 call_timeout: float = CALL_TIMEOUT) -> None:
        self.socket_path = socket_path
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._lock = threading.Lock()
        self._vault_path: Path | None = None
        self._calls = 0
        self._nonce_frames: dict[str | tuple[str, int], bytes] = {}
        self._conn: _Connection | None = self._open()

    def __repr__(self) -> str:
        return f"AgentClient({str(self.socket_path)!r})"

    # -- connection ----------------------------------------------------------------------

    def _open(self) -> _Connection:
        return _open_connection(self.socket_path, self._connect_timeout, self._call_timeout)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.sock.close()
        self._conn = None

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, op: str, **args: Any) -> dict[str, Any]:
        return self._exchange(encode_frame({"op": op, **args}))

    def _exchange(self, frame: bytes) -> dict[str, Any]:
        """Send one request's frame, read its answer; the error it carries is raised."""
        self._calls += 1
        if self._calls == _FAST_JSON_AFTER:
            use_orjson()  # a client that lives long: the import pays for itself from here
        with self._lock:
            try:
                answer = self._send(frame)
            except (TimeoutError, BlockingIOError):  # the answer, or the request, timed out
                self._disconnect()
                raise AgentError(f"the agent did not answer within "
                                 f"{self._call_timeout:g} s") from None
            except ProtocolError:
                self._disconnect()
                raise AgentError("the agent sent a malformed answer") from None
            except OSError as exc:
                self._disconnect()
                raise AgentError(f"talking to the agent failed: {exc.strerror or exc}"
                                 ) from None
        return answer if answer.get("ok") is True else raise_for_error(answer)

    def _send(self, frame: bytes) -> dict[str, Any]:
        """One round trip, reconnecting once if the agent had closed this connection.

        A request the agent served before closing costs at most an unused nonce. A
        connection closed again right after a reconnect that succeeded means the agent is
        alive and closed it to admit others (its connection limits): BusyError, not locked.
        """
        for attempt in (1, 2):
            conn = self._conn
            if conn is None:
                conn = self._conn = self._open()
            try:
                # Blocking, bounded by SO_SNDTIMEO (BlockingIOError when it runs out): one
                # send(), then one recv() for the answer.
                conn.sock.sendall(frame)
                return conn.reader.read()
            except (BrokenPipeError, ConnectionResetError, ConnectionClosedError) as exc:
                self._disconnect()
                mid_frame = isinstance(exc, ConnectionClosedError) and exc.mid_frame
                if mid_frame:
                    raise LockedError("the agent closed the connection",
                                      hint=socket_location.LOCKED_HINT) from None
                if attempt == 2:
                    raise BusyError("the agent closed the connection again to admit other "
                                    "clients", hint=socket_location.BUSY_HINT) from None
        raise AgentError("unreachable")  # the loop returns or raises

    # -- operations ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """unlocked, vault, pid, expires_in, idle_expires_in, allow_withdrawal, generation..."""
        answer = self._call("status")
        answer.pop("ok", None)
        return answer

    def list(self, *, retired: bool = False) -> builtins.list[dict[str, Any]]:
        """Every entry's metadata and fingerprint (no secrets), sorted by name; retired
        pairs only with `retired=True`, as `Vault.list`. Fetched in pages, so any vault
        fits; a save between two pages starts the listing over."""
        for _ in range(_LIST_ATTEMPTS):
            listed = self._list_once(retired)
            if listed is not None:
                return listed
        raise AgentError("the vault kept changing while it was being listed; try again")

    def _list_once(self, retired: bool) -> builtins.list[dict[str, Any]] | None:
        entries: builtins.list[dict[str, Any]] = []
        after: str | None = None
        generation: object = None
        while True:
            answer = self._call("list", retired=retired, page=True, after=after)
            page, after = answer.get("entries"), answer.get("next")
            if not isinstance(page, list) or not (after is None or isinstance(after, str)) \
                    or (after is not None and not page):
                raise AgentError("the agent sent a malformed list")
            if entries and answer.get("generation") != generation:
                return None  # saved in between: the pages would not fit together
            generation = answer.get("generation")
            entries += page
            if after is None:  # the last page (or an agent that does not page)
                return entries

    def credentials(self, name: str) -> Credentials:
        """The key pair of entry `name`, for handing to a bot."""
        entry = self._call("get", name=name).get("entry")
        if not isinstance(entry, dict):
            raise AgentError("the agent sent malformed credentials")
        try:
            return Entry.from_wire(entry)
        except InvalidInputError:
            raise AgentError("the agent sent malformed credentials") from None

    def data_key(self) -> bytes:
        """The vault's data key, so this process can open (and save) the unlocked vault."""
        value = self._call("data_key").get("data_key")
        try:
            return base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise AgentError("the agent sent a malformed key") from None

    def nonces(self, name: str, count: int) -> builtins.list[int]:
        """`count` consecutive nonces for entry `name`'s key."""
        return list(_nonces_in(self._exchange(self._nonce_frame(name, count)), count))

    def next_nonce(self, name: str) -> int:
        """The next nonce for entry `name`'s key: above every one handed out before."""
        # A bot asks this for every request (bench/bench_agent.py): its frame is made once.
        frame = self._nonce_frames.get(name) if type(name) is str else None
        return _nonces_in(self._exchange(frame or self._nonce_frame(name, 1)), 1).start

    def _nonce_frame(self, name: str, count: int) -> bytes:
        """A nonce request's frame, kept for the next time (by name alone for one nonce)."""
        kept = type(name) is str and type(count) is int  # else the agent refuses it
        key = name if count == 1 else (name, count)
        frame = self._nonce_frames.get(key) if kept else None
        if frame is None:
            frame = encode_frame({"op": "nonce", "name": name, "count": count})
            if kept and len(self._nonce_frames) < _NONCE_FRAMES:
                self._nonce_frames[key] = frame
        return frame

    def sign(self, name: str, path: str, data: Mapping[str, Any] | str = "",
             method: str = "POST") -> Signed:
        """Sign a Kraken request with entry `name`'s key; the secret stays in the agent.

        `data` is the body (or, for a Futures GET, the query string) as a mapping or an
        already URL-encoded string. For Spot the returned body carries the nonce.
        """
        encoded = data if isinstance(data, str) else urlencode(data)
        answer = self._call("sign", name=name, path=path, data=encoded, method=method)
        headers, body, nonce = answer.get("headers"), answer.get("body"), answer.get("nonce")
        if not isinstance(headers, dict) or not isinstance(body, str) or \
                not isinstance(nonce, int):
            raise AgentError("the agent sent a malformed signed request")
        return Signed(body, {str(k): str(v) for k, v in headers.items()}, nonce)

    def grant_resolve(self, grant_key: str) -> GrantTarget:
        """The grant with api key `grant_key` (no authentication: the key is public).
        GrantError with reason unknown / revoked / expired when it cannot be used."""
        return grant_target(self._call("grant_resolve", grant_key=grant_key))

    def grant_sign(self, grant_key: str, *, path: str, method: str, body: str,
                   signature: str, nonce_header: str, content_type: str, key_id: str
                   ) -> GrantSigned:
        """Have the agent check a bot's request against its grant and sign it with the real
        key, with the key's own nonce put in (see grant_interface.md). GrantError when the
        grant or the signature does not hold, ScopeError for an endpoint beyond it."""
        answer = self._call("grant_sign", grant_key=grant_key, path=path, method=method,
                            body=body, signature=signature, nonce_header=nonce_header,
                            content_type=content_type, key_id=key_id)
        return grant_signed(answer)

    def sign_with_grant(self, grant_key: str, grant_secret: Secret | str, path: str,
                        data: Mapping[str, Any] | str = "", method: str = "POST", *,
                        content_type: str = "form") -> GrantSigned:
        """What an in-process integration does against a --sign-only agent: sign the
        request with the grant, as a bot would, and have the agent re-sign it with the real
        key. For Spot the returned body carries the key's nonce."""
        import time

        from ..exchanges.kraken import sign_futures, sign_spot_text
        from .signing import bot_nonce, spot_body_with_nonce, spot_json_with_nonce

        encoded = data if isinstance(data, str) else urlencode(data)
        target = self.grant_resolve(grant_key)
        # A nonce from the clock (10 ns ticks) where the caller set none: the agent accepts
        # a grant-signed request once, and only while its nonce is recent (agent.freshness).
        fresh = time.time_ns() // 10
        nonce_header = ""
        if target.exchange == "kraken-spot":
            if not bot_nonce(encoded, content_type):
                encoded = (spot_json_with_nonce(encoded, fresh) if content_type == "json"
                           else spot_body_with_nonce(encoded, fresh))
            signature = sign_spot_text(grant_secret, path, bot_nonce(encoded, content_type),
                                       encoded)
        else:
            nonce_header = str(fresh)
            signature = sign_futures(grant_secret, path, nonce_header, encoded)
        return self.grant_sign(grant_key, path=path, method=method, body=encoded,
                               signature=signature, nonce_header=nonce_header,
                               content_type=content_type, key_id=target.key_id)

    def sign_challenge(self, name: str, challenge: str) -> str:
        """The `signed_challenge` for a Kraken Futures websocket subscription."""
        signed = self._call("sign_challenge", name=name, challenge=challenge).get("signed")
        if not isinstance(signed, str):
            raise AgentError("the agent sent a malformed signature")
        return signed

    def extend(self, ttl: float | None, idle: float | None, *, proof: str | None = None
               ) -> dict[str, Any]:
        """Push the agent's absolute expiry to at least `ttl` seconds from now (never
        earlier) and/or set its idle limit (None: unchanged); returns the new
        expires_in / idle_expires_in. A sign-only agent wants `proof` (see
        `Session.extend_agent`: it takes the passphrase)."""
        answer = self._call("extend", ttl=ttl, idle=idle,
                            **({} if proof is None else {"proof": proof}))
        answer.pop("ok", None)
        return answer

    def lock(self) -> None:
        """Make the agent wipe its key and exit. Locking a locked vault is not an error."""
        with contextlib.suppress(LockedError):
            self._call("lock")
        self.close()

    @contextlib.contextmanager
    def request_lock(self, name: str, timeout: float = _ORDER_TIMEOUT) -> Iterator[None]:
        """Hold the request order of entry `name`'s key while signing *and sending* one request.

        Nonces leave the agent in increasing order, but two processes may send theirs in the
        opposite order, and an exchange that rejects a nonce below the last one it saw (Kraken
        Spot without a nonce window) would reject the later-sent, lower one. Holding this
        from `sign` until the response arrives puts the key's requests on the wire one at a
        time, across every process. It is the same `KeyOrder` the integrations take, keyed
        by exchange and api key like the nonce counter (`key_order`); waiting longer than
        `timeout` raises `RequestLockTimeout`, re-entry raises `ConflictError`. The OS
        releases it if the holder dies.
        """
        with self.key_order(name).hold(timeout):
            yield

    def key_order(self, name: str) -> KeyOrder:
        """The request order (`botvault.request_lock.KeyOrder`) of entry `name`'s real key,
        found from the agent's listing, which carries no secret. `hold_async` is its
        asyncio form."""
        check_name(name)
        listed = next((e for e in self.list() if e.get("name") == name), None)
        if listed is None:
            raise NotFoundError(f"no entry named {name!r}",
                                hint="see the names with: botvault list")
        from ..request_lock import KeyOrder

        return KeyOrder(self._agent_vault_path(), str(listed.get("exchange", "")),
                        str(listed.get("api_key", "")))

    def grant_order(self, grant_key: str) -> KeyOrder:
        """The request order of the real key a grant signs with (from `grant_resolve`: the
        key's id, never the key), the same lock `key_order` gives for its entry."""
        from ..request_lock import KeyOrder

        return KeyOrder.for_key_id(self._agent_vault_path(), self.grant_resolve(grant_key).key_id)

    def _agent_vault_path(self) -> Path:
        # Asked of the agent, so that the lock is the same whichever socket led here.
        if self._vault_path is None:
            self._vault_path = Path(str(self.status()["vault"]))
        return self._vault_path


def connect(vault_path: str | os.PathLike[str] | None = None, *,
            connect_timeout: float = CONNECT_TIMEOUT,
            call_timeout: float = CALL_TIMEOUT) -> AgentClient:
    """A client for the agent serving `vault_path` ($BOTVAULT_PATH or the default).

    $BOTVAULT_AGENT_SOCKET, when set, names the socket directly. Raises LockedError when no
    agent runs (no socket, or a stale one), InsecurePermissionsError when the socket or its
    directory is not private.
    """
    return AgentClient(socket_location.socket_path_for(vault_path),
                       connect_timeout=connect_timeout, call_timeout=call_timeout)

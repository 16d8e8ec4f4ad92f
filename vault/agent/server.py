"""The agent process: holds one vault's data key and serves its socket until it locks.

Binding the socket, and the lock that makes this the only agent of its vault, is
`agent.listener`; what each request does is `agent.ops`.

Started by `botvault.agent.launcher.start_agent` as `python -m botvault.agent.server`, in its own
session. It turns core dumps off first, reads one JSON line of configuration (with the data
key) from its stdin pipe, opens the vault with the key (which verifies it), binds the
socket, answers one JSON line on stdout, and then points stdin, stdout and stderr at
/dev/null: nothing it does afterwards can reach a terminal or a log.

It locks (wipes the key, removes the socket, exits 0) at the absolute TTL, after the idle
time without a request, on a `lock` request, or on SIGTERM / SIGINT.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import gc
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidInputError, VaultError
from ..fast_json import use_orjson
from ..open_vault import Vault
from . import hardening
from .listener import Bound, bind_listener, close_fds, release_agent_lock
from .ops import Agent
from .protocol import (
    MAX_ANSWER,
    AgentError,
    FrameReader,
    ProtocolError,
    encode_frame,
    error_response,
    nonce_answer_frame,
    use_kernel_timeouts,
)

__all__ = ["CONN_IDLE", "FRAME_TIMEOUT", "MAX_CONNECTIONS", "PER_PEER", "AgentServer", "main"]

FRAME_TIMEOUT = 5.0
CONN_IDLE = 60.0  # a connection with no request for this long is closed
# Sized for a burst: 200 bots started at once (systemd), or one process with a few hundred
# threads each holding a connection, fit without an eviction (tests/test_agent_burst.py).
MAX_CONNECTIONS = 1024
PER_PEER = 512  # connections one client process may hold; more close its oldest idle one
_ACCEPT_BACKOFF = 0.25  # after EMFILE, accepting pauses this long instead of spinning
_CONFIG_LIMIT = 64 * 1024
_MAX_WAIT = 60.0  # the loop wakes at least this often; epoll refuses very long timeouts
_KEY_SIZE = 32


@dataclass(eq=False)
class _Conn:
    """One client connection: who opened it, and whether it is waiting for a request."""

    sock: socket.socket
    pid: int
    last_active: float
    busy: bool = False


class AgentServer:
    """Accepts connections (main thread) and serves each in its own daemon thread.

    Connections cost a thread and a descriptor each, so they are bounded: one that sends
    no request for `conn_idle` seconds is closed; one peer process holds at most
    `per_peer` and all together at most `max_connections`; when a limit is reached the
    connection idle the longest is closed to admit the new one (clients reconnect by
    themselves). So a client that opens thousands of connections and leaves them idle
    cannot shut out the others, and idle connections cost no CPU (each thread blocks).
    """

    def __init__(self, agent: Agent, bound: Bound, *, frame_timeout: float = FRAME_TIMEOUT,
                 conn_idle: float = CONN_IDLE, max_connections: int = MAX_CONNECTIONS,
                 per_peer: int = PER_PEER) -> None:
        self._agent = agent
        self._bound = bound
        self._frame_timeout = frame_timeout
        self._conn_idle = conn_idle
        self._max_connections = max_connections
        self._per_peer = per_peer
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        # Closed only when no one can call stop() any more: a late stop() writing to a
        # closed, reused descriptor would write into some other file.
        weakref.finalize(self, close_fds, self._wake_r, self._wake_w)
        self._connections: dict[socket.socket, _Conn] = {}
        self._connections_lock = threading.Lock()
        self._spare_fd: int | None = _open_spare()
        self._accept_paused_until = 0.0

    @property
    def socket_path(self) -> Path:
        return self._bound.path

    def connection_count(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def stop(self) -> None:
        """Ask the serving loop to lock and return. Safe from threads and signal handlers."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def serve_forever(self) -> None:
        """Serve until stopped or expired; then wipe the key and remove the socket."""
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        listening = False
        try:
            while not self._stopping.is_set():
                left = self._agent.time_left()
                if left <= 0:
                    break
                now = time.monotonic()
                paused = now < self._accept_paused_until
                if listening and paused:
                    selector.unregister(self._bound.listener)
                    listening = False
                elif not listening and not paused:
                    selector.register(self._bound.listener, selectors.EVENT_READ)
                    listening = True
                wait = min(left, _MAX_WAIT)
                if paused:
                    wait = min(wait, self._accept_paused_until - now)
                for key, _ in selector.select(wait):
                    if key.fileobj is self._bound.listener:
                        self._accept_all()
                    else:
                        with contextlib.suppress(OSError):
                            os.read(self._wake_r, 512)
        finally:
            selector.close()
            self._shutdown()

    def _accept_all(self) -> None:
        while True:
            try:
                conn, _ = self._bound.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._out_of_descriptors()
                return  # anything else: the connection waits in the backlog
            # Checked here, before any thread or byte: another uid gets a closed connection.
            if not hardening.peer_allowed(conn):
                conn.close()
                continue
            self._admit(conn)

    def _out_of_descriptors(self) -> None:
        """EMFILE on accept: the waiting connection would make the listener readable forever
        (a busy loop). Close the longest-idle connection to make room, refuse the waiting
        one through the spare descriptor, and stop accepting for a moment."""
        with self._connections_lock:
            self._evict_locked(None)
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
            with contextlib.suppress(OSError):
                refused, _ = self._bound.listener.accept()
                refused.close()
            self._spare_fd = _open_spare()
        self._accept_paused_until = time.monotonic() + _ACCEPT_BACKOFF

    def _admit(self, sock: socket.socket) -> None:
        entry = _Conn(sock, hardening.peer_pid(sock), time.monotonic())
        with self._connections_lock:
            mine = [c for c in self._connections.values() if c.pid == entry.pid]
            if len(mine) >= self._per_peer:
                self._evict_locked(entry.pid)
            if len(self._connections) >= self._max_connections and \
                    not self._evict_locked(None):
                sock.close()  # every connection is in the middle of a request
                return
            self._connections[sock] = entry
        # Blocking, the kernel bounding each wait: a request costs one recv and one send.
        use_kernel_timeouts(sock, send=self._conn_idle)
        try:
            threading.Thread(target=self._serve, args=(entry,), daemon=True,
                             name="botvault-agent-conn").start()
        except RuntimeError:  # no more threads: refuse this client, keep the others
            with self._connections_lock:
                self._connections.pop(sock, None)
            sock.close()

    def _evict_locked(self, pid: int | None) -> bool:
        """Close the connection (of `pid`, or of anyone) that has been idle the longest."""
        idle = [c for c in self._connections.values()
                if not c.busy and (pid is None or c.pid == pid)]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.last_active)
        del self._connections[oldest.sock]
        with contextlib.suppress(OSError):
            # Wakes its thread (recv returns 0), which closes the descriptor.
            oldest.sock.shutdown(socket.SHUT_RDWR)
        return True

    def _serve(self, entry: _Conn) -> None:
        conn = entry.sock
        reader = FrameReader(conn, wait=self._conn_idle, frame_timeout=self._frame_timeout,
                             keep=_is_nonce_request)
        # Names bound once: every request runs this loop (bench/bench_agent.py).
        read, lock, connections, agent = reader.read, self._connections_lock, \
            self._connections, self._agent
        nonce, nonce_frame = agent.handle_nonce, nonce_answer_frame
        try:
            while not self._stopping.is_set():
                try:
                    request = read()
                except (ProtocolError, TimeoutError):
                    return  # idle too long, oversized, truncated, not JSON: drop this one
                with lock:
                    if conn not in connections:
                        return  # evicted while the request arrived
                    entry.busy = True
                try:
                    op = request.get("op")
                    if op == "nonce":
                        got = nonce(request)
                        # One send() for the whole frame, as below.
                        conn.sendall(nonce_frame(got) if type(got) is range else _frame(got))
                    elif op != "lock" and agent.handles(op):
                        # Blocking, bounded by SO_SNDTIMEO: one send() for the whole frame.
                        conn.sendall(_frame(agent.handle(request)))
                    elif not self._respond(conn, request, op):
                        return
                finally:
                    # No lock: an eviction that reads these halfway finds this connection
                    # idle either way (busy is cleared last), and may close it as it may now.
                    entry.last_active = time.monotonic()
                    entry.busy = False
        except OSError:
            return
        finally:
            with lock:
                connections.pop(conn, None)
            conn.close()

    def _respond(self, conn: socket.socket, request: dict[str, Any], op: object) -> bool:
        """Answer `lock`, or refuse an unknown op; False: the connection is to be closed."""
        if not self._agent.handles(op):
            conn.sendall(encode_frame(error_response(InvalidInputError(
                "unknown operation", hint="client and agent versions may differ"))))
            return False
        response = self._agent.handle(request)
        # Gone before the answer leaves: whoever hears "locked" and asks again finds
        # no agent and no key.
        self._withdraw()
        conn.sendall(_frame(response))
        self.stop()
        return False

    def _withdraw(self) -> None:
        """Remove the socket (so no new client reaches us) and wipe the key. Idempotent.

        The socket is removed only while it is still ours: a successor may have replaced it.
        """
        with contextlib.suppress(OSError):
            st = os.lstat(self._bound.path)
            if (st.st_dev, st.st_ino) == self._bound.identity:
                os.unlink(self._bound.path)
        self._agent.close()

    def _shutdown(self) -> None:
        self._withdraw()
        self._bound.listener.close()
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._spare_fd is not None:
            close_fds(self._spare_fd)
            self._spare_fd = None
        release_agent_lock(self._bound.path, self._bound.lock_fd)


def _open_spare() -> int | None:
    """A descriptor held in reserve, given up to refuse a connection when none are left."""
    try:
        return os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None


def _is_nonce_request(request: dict[str, Any]) -> bool:
    """Whether a connection's reader keeps this request to hand out again for the same
    bytes: a nonce request, which nothing here changes (`Agent.handle_nonce` reads it)."""
    return request.get("op") == "nonce"


def _frame(response: dict[str, Any]) -> bytes:
    try:
        return encode_frame(response, MAX_ANSWER)
    except VaultError as exc:  # an answer larger than a frame
        return encode_frame(error_response(exc))


# -- the process ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    vault: Path
    socket: Path
    ttl: float
    idle: float
    allow_withdrawal: bool
    sign_only: bool = False


def _read_config(stream: IO[bytes]) -> tuple[_Config, bytes]:
    """The launcher's one line: settings, and the data key (base64), never from argv/env."""
    line = stream.readline(_CONFIG_LIMIT)
    try:
        doc = json.loads(line)
        config = _Config(Path(doc["vault"]), Path(doc["socket"]), float(doc["ttl"]),
                         float(doc["idle"]), doc["allow_withdrawal"] is True,
                         doc.get("sign_only") is True)
        key = base64.b64decode(doc["data_key"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidInputError("the agent received a malformed configuration") from None
    if len(key) != _KEY_SIZE or not config.vault.is_absolute() or not config.socket.is_absolute():
        raise InvalidInputError("the agent received a malformed configuration")
    return config, key


def _start(stream: IO[bytes]) -> tuple[Agent, Bound]:
    config, key = _read_config(stream)
    vault = Vault.open_with_key(config.vault, key)  # AuthenticationError for a wrong key
    del key
    try:
        agent = Agent(vault, ttl=config.ttl, idle=config.idle,
                      allow_withdrawal=config.allow_withdrawal, sign_only=config.sign_only)
        return agent, bind_listener(config.socket)
    except BaseException:
        vault.close()
        raise


def _detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _answer(stdout: IO[bytes], message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        stdout.write(json.dumps(message, separators=(",", ":")).encode("ascii") + b"\n")
        stdout.flush()


def main() -> int:
    hardening.disable_core_dumps()  # before the key is read, so no dump can ever hold it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.chdir("/")
    use_orjson()
    stdout = sys.stdout.buffer
    try:
        agent, bound = _start(sys.stdin.buffer)
    except VaultError as exc:
        _answer(stdout, error_response(exc))
        return 1
    except Exception as exc:
        # The class and errno text only: the message of an unexpected error is not shown.
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else ""
        _answer(stdout, error_response(AgentError(
            f"the agent could not start: {type(exc).__name__} {detail}".rstrip())))
        return 1
    server = AgentServer(agent, bound)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: server.stop())
    _answer(stdout, {"ok": True, "pid": os.getpid(), "socket": str(bound.path)})
    _detach_stdio()
    # What start-up built lives as long as the process: the collector's full passes skip it
    # from now on, so they stay short (a pause lands in some request's round trip).
    gc.collect()
    gc.freeze()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

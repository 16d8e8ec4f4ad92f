"""The order of one real exchange key's requests, across every process of the machine.

Nonces leave the counter in increasing order, but two senders may put theirs on the wire in
the opposite order, and Kraken (no nonce window) rejects the later-sent, lower one. Holding
this lock from taking the nonce until the response has arrived puts one key's requests on the
wire one at a time, in nonce order. Every user of a key takes the same lock: the in-process
integrations (ccxt, python-kraken-sdk, krakenex), `AgentClient.request_lock` and the gateway.

- **Keyed like the nonce counter**: by exchange and api key (`nonces.key_id`), never by the
  entry's name, so two names for one key, or a rename, cannot split the order.
- **Cross-process**: an exclusive `flock` on `VAULT.requests/<key id>.lock`; the kernel
  releases it when the holder dies, so a killed bot never wedges the key.
- **Threads**: each acquisition opens its own descriptor, so threads of one process exclude
  each other through the same flock.
- **asyncio**: `hold_async` never blocks the event loop: tasks of one loop queue on an
  `asyncio.Lock` (first come, first served), and the one at the front polls the flock with
  `LOCK_NB` and short sleeps. Cancellation and timeouts release everything. A loop keeps
  the key's lock file open between requests (one descriptor per loop and key, so two loops
  still exclude each other); after each flock one `stat` checks that the path still names
  that file, and a removed or replaced file is opened again with every check. So the
  gateway's hot path is one flock, one stat and one unlock (it used to make a directory,
  check it, open the file and start a `wait_for` task for every request).
- **Timeout**: waiting longer than `timeout` seconds raises `RequestLockTimeout`.
- **Re-entry is refused** with `ConflictError`: a nested request on one key from the holder
  itself would wait for itself (flock is per open file, so it would deadlock).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from . import private
from .errors import ConflictError, InvalidInputError
from .exchanges.profiles import key_id

if TYPE_CHECKING:  # asyncio costs ~17 ms to import; `run` and other sync callers never need it
    import asyncio

__all__ = ["DEFAULT_TIMEOUT", "KeyOrder", "RequestLockTimeout", "requests_dir"]

DEFAULT_TIMEOUT = 30.0
# Polling steps for the asyncio form (and for timed waits): short at first, because the
# holder of a loopback request usually finishes within a millisecond or two.
_POLL_FIRST, _POLL_MAX = 0.0002, 0.005

_KEY_ID = re.compile(r"[0-9a-f]{32}")

_held_by_thread = threading.local()
_held_in_context: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "botvault_request_locks_held", default=frozenset())



class _LoopHold:
    """One (event loop, vault, key): its asyncio.Lock, so tasks of the loop queue in arrival
    order, and the lock file's descriptor that the loop keeps open (see the module doc)."""

    __slots__ = ("fd", "identity", "path", "pid", "queue", "waiting")

    def __init__(self, queue: asyncio.Lock, path: str) -> None:
        self.queue = queue
        self.waiting = 0  # tasks queued for it (asyncio.Lock keeps its waiters private)
        self.path = path
        self.fd: int | None = None
        self.identity: tuple[int, int] = (0, 0)
        self.pid = 0  # a child after fork() shares the descriptor's flock: it opens its own

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


_LoopHolds = dict[tuple[str, str], _LoopHold]
_loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopHolds] = (
    weakref.WeakKeyDictionary())
_loop_locks_guard = threading.Lock()


class RequestLockTimeout(ConflictError):
    """Another request on the same key held its order longer than the timeout allowed."""


def requests_dir(vault_path: Path) -> Path:
    return vault_path.with_name(vault_path.name + ".requests")


class KeyOrder:
    """The request order of one real key (exchange + api key) of the vault at `vault_path`."""

    def __init__(self, vault_path: str | os.PathLike[str], exchange: str, api_key: str) -> None:
        self.vault_path = Path(vault_path)
        self.key_id = key_id(exchange, api_key)

    @classmethod
    def for_key_id(cls, vault_path: str | os.PathLike[str], key_id: str) -> KeyOrder:
        """The order of the key whose `nonces.key_id` is `key_id` (the gateway knows only
        that, from the agent's grant_resolve, never the api key itself)."""
        if not _KEY_ID.fullmatch(key_id):
            # The id becomes a file name: anything but the hex digest could leave the folder.
            raise InvalidInputError("a key id is 32 lowercase hex digits")
        order = cls.__new__(cls)
        order.vault_path = Path(vault_path)
        order.key_id = key_id
        return order

    def __repr__(self) -> str:
        return f"KeyOrder(vault={str(self.vault_path)!r}, key_id={self.key_id!r})"

    @property
    def path(self) -> Path:
        return requests_dir(self.vault_path) / f"{self.key_id}.lock"

    @contextlib.contextmanager
    def hold(self, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
        """Hold the key's order in this thread (blocking); see the module docstring."""
        held: set[str] = _thread_held()
        if self.key_id in held or self.key_id in _held_in_context.get():
            raise _reentry()
        fd = self._open()
        try:
            _flock_within(fd, timeout)
            held.add(self.key_id)
            try:
                yield
            finally:
                held.discard(self.key_id)
        finally:
            os.close(fd)  # closing releases the flock

    def hold_async(self, timeout: float = DEFAULT_TIMEOUT
                   ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the key's order in this task without blocking the event loop."""
        return _AsyncHold(self, timeout)

    async def _flock_async(self, hold: _LoopHold, deadline: float, timeout: float) -> int:
        """The loop's descriptor of the key's lock file, flocked; opened (with every check)
        when it is not open yet, and again when the path no longer names that file."""
        import asyncio

        while True:
            if hold.fd is None or hold.pid != os.getpid():
                if hold.pid == os.getpid():
                    hold.close()
                hold.fd = None  # inherited through fork(): the parent's, left to it
                fd = self._open()
                st = os.fstat(fd)
                hold.fd, hold.identity, hold.pid = fd, (st.st_dev, st.st_ino), os.getpid()
            fd = hold.fd
            delay = _POLL_FIRST
            while not _try_flock(fd):
                if time.monotonic() >= deadline:
                    raise _timed_out(timeout)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)
            try:
                st = os.stat(hold.path)
                if (st.st_dev, st.st_ino) == hold.identity:
                    return fd
            except FileNotFoundError:
                pass
            # Removed or replaced while we had it open: others lock the new file.
            _unlock(fd)
            hold.close()

    def free_here(self) -> bool:
        """True when no task of the running loop holds or waits for the key's order (what
        another process holds is not known here: taking it may still wait for its flock)."""
        hold = _loop_hold(self)
        return not hold.queue.locked() and hold.waiting == 0

    def _open(self) -> int:
        directory = requests_dir(self.vault_path)
        private.make_private_dirs(directory)
        private.check_dir(directory, "the request-lock directory", private.DirRule.CLOSED)
        return private.open_private_file(self.path, os.O_RDWR | os.O_CREAT, "the request lock")


class _AsyncHold:
    """`KeyOrder.hold_async`: a class rather than a generator, as it runs on every request
    of the gateway (no generator object, no context-manager wrapper around it)."""

    __slots__ = ("_fd", "_hold", "_order", "_timeout", "_token")

    def __init__(self, order: KeyOrder, timeout: float) -> None:
        self._order = order
        self._timeout = timeout

    async def __aenter__(self) -> None:
        import asyncio

        order, timeout = self._order, self._timeout
        if order.key_id in _held_in_context.get() or order.key_id in _thread_held():
            raise _reentry()
        deadline = time.monotonic() + timeout
        hold = self._hold = _loop_hold(order)
        queue = hold.queue
        if queue.locked():  # else acquire() takes it at once: no timer, no task
            hold.waiting += 1
            try:  # a wait behind another request anyway: wait_for's task costs nothing here
                await asyncio.wait_for(queue.acquire(), timeout)
            except asyncio.TimeoutError:
                raise _timed_out(timeout) from None
            finally:
                hold.waiting -= 1
        else:
            await queue.acquire()
        try:
            self._fd = await order._flock_async(hold, deadline, timeout)
        except BaseException:
            queue.release()
            raise
        self._token = _held_in_context.set(_held_in_context.get() | {order.key_id})

    async def __aexit__(self, *_exc: object) -> None:
        try:
            _held_in_context.reset(self._token)
        finally:
            try:
                _unlock(self._fd)
            finally:
                self._hold.queue.release()


def _thread_held() -> set[str]:
    held: set[str] | None = getattr(_held_by_thread, "keys", None)
    if held is None:
        held = set()
        _held_by_thread.keys = held
    return held


def _loop_hold(order: KeyOrder) -> _LoopHold:
    import asyncio

    loop = asyncio.get_running_loop()
    holds = _loop_locks.get(loop)
    if holds is None:
        with _loop_locks_guard:
            holds = _loop_locks.get(loop)
            if holds is None:
                holds = _loop_locks[loop] = {}
                # The descriptors close with the loop (the callback holds no loop reference).
                weakref.finalize(loop, _close_holds, holds)
    key = (os.fspath(order.vault_path), order.key_id)
    hold = holds.get(key)
    if hold is None:
        hold = holds[key] = _LoopHold(asyncio.Lock(), os.fspath(order.path))
    return hold


def _close_holds(holds: _LoopHolds) -> None:
    for hold in holds.values():
        if hold.pid == os.getpid():
            hold.close()


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _flock_within(fd: int, timeout: float) -> None:
    if _try_flock(fd):
        return
    # A blocking flock cannot time out; poll instead. Waits are short when the holder is a
    # loopback request, and a wait is all a second sender on one key can do anyway.
    deadline = time.monotonic() + timeout
    delay = _POLL_FIRST
    while not _try_flock(fd):
        if time.monotonic() >= deadline:
            raise _timed_out(timeout)
        time.sleep(delay)
        delay = min(delay * 2, _POLL_MAX)


def _reentry() -> ConflictError:
    return ConflictError(
        "this thread or task already holds the request order of this key",
        hint="send one request at a time per key; a nested request would wait for itself")


def _timed_out(timeout: float) -> RequestLockTimeout:
    return RequestLockTimeout(
        f"another request on this key held it for more than {timeout:g} s",
        hint="a request in flight is slow or stuck; raise the timeout or check the bot")

"""The agent's operations on the unlocked vault, its timers, and their lock.

Transport-free: `Agent.handle` takes a decoded request and returns the response object, so
the operations can be exercised without sockets. One lock serialises every use of the vault
(reload, reads, nonce allocation); HMACs are computed outside it.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core import Vault
from ..entries import Entry
from ..errors import InvalidInputError, LockedError, VaultError
from . import hardening, signing
from .protocol import AgentError, error_response

__all__ = ["Agent"]

_MAX_NONCES = 100_000


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str):
        raise InvalidInputError(f"{key!r} must be text")
    return value


def _count(request: dict[str, Any]) -> int:
    value = request.get("count", 1)
    # bool is an int subclass; `true` as a count is a caller bug.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_NONCES:
        raise InvalidInputError(f"'count' must be a whole number from 1 to {_MAX_NONCES}")
    return value


def _seconds(request: dict[str, Any], key: str) -> float:
    value = request.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 < value < math.inf:
        raise InvalidInputError(f"{key!r} must be a positive number of seconds")
    return float(value)


class Agent:
    """An unlocked vault with an absolute and an idle expiry on a monotonic clock."""

    def __init__(self, vault: Vault, *, ttl: float, idle: float, allow_withdrawal: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (0 < ttl < math.inf and 0 < idle < math.inf):
            raise InvalidInputError("the agent's ttl and idle time must be positive and finite")
        self._vault: Vault | None = vault
        self._lock = threading.Lock()
        self._clock = clock
        self._expires_at = clock() + ttl
        self._idle = idle
        self._last_use = clock()
        self.allow_withdrawal = allow_withdrawal
        self.path = vault.path
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "status": self._status, "list": self._list, "get": self._get,
            "data_key": self._data_key, "nonce": self._nonce, "sign": self._sign,
            "sign_challenge": self._sign_challenge, "lock": self._lock_op,
            "extend": self._extend,
        }

    # -- timers ------------------------------------------------------------------------

    def time_left(self) -> float:
        """Seconds until the agent must lock (either limit), never below 0."""
        now = self._clock()
        return max(0.0, min(self._expires_at, self._last_use + self._idle) - now)

    # -- dispatch ----------------------------------------------------------------------

    def handles(self, op: object) -> bool:
        return isinstance(op, str) and op in self._handlers

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """The response to one request whose op `handles` accepted. Every op is a use."""
        self._last_use = self._clock()
        try:
            return {"ok": True, **self._handlers[request["op"]](request)}
        except VaultError as exc:
            return error_response(exc)
        except OSError as exc:
            # Paths and errno only: no secret reaches an OSError's text.
            return error_response(AgentError(f"the agent could not complete the request: "
                                             f"{exc.strerror or type(exc).__name__}"))
        except Exception as exc:
            # The class name only: a message might quote data the request carried.
            return error_response(AgentError(f"the agent failed: {type(exc).__name__}"))

    def close(self) -> None:
        """Wipe the data key (Vault.close overwrites it) and refuse every later request."""
        with self._lock:
            if self._vault is not None:
                # The vault keeps each counter's mark (vault.nonces.marks). Locking goes on
                # if that fails: the next save records them.
                with contextlib.suppress(VaultError, OSError):
                    self._vault.record_nonce_marks()
                self._vault.close()
                self._vault = None

    # -- operations --------------------------------------------------------------------

    def _open_vault(self) -> Vault:
        """The vault, brought up to date with what other processes saved. Lock held."""
        if self._vault is None:
            raise LockedError("the agent is locking", hint="run: botvault unlock")
        self._vault.reload()
        return self._vault

    def _entry(self, name: str) -> Entry:
        with self._lock:
            return self._open_vault().get(name)

    def _extend(self, request: dict[str, Any]) -> dict[str, Any]:
        """A later absolute expiry (never an earlier one) and/or a new idle limit: what
        `botvault unlock --ttl/--idle` does to an agent that is already running."""
        now = self._clock()
        with self._lock:
            if request.get("ttl") is not None:
                self._expires_at = max(self._expires_at, now + _seconds(request, "ttl"))
            if request.get("idle") is not None:
                self._idle = _seconds(request, "idle")
        return {"expires_in": self._expires_at - now, "idle_expires_in": self._idle}

    def _status(self, _request: dict[str, Any]) -> dict[str, Any]:
        now = self._clock()
        problem: str | None = None
        with self._lock:
            if self._vault is None:
                raise LockedError("the agent is locking", hint="run: botvault unlock")
            try:
                self._vault.reload()
            except VaultError as exc:
                # Still unlocked, and saying so matters more here than the file's state
                # (moved, replaced): every op that reads entries reports that itself.
                problem = exc.message
            generation = self._vault.generation
        return {
            "unlocked": True, "vault": str(self.path), "pid": os.getpid(),
            "expires_in": max(0.0, self._expires_at - now),
            "idle_expires_in": max(0.0, self._last_use + self._idle - now),
            "allow_withdrawal": self.allow_withdrawal, "generation": generation,
            "dumpable": hardening.is_dumpable(),
            "core_limit": list(resource.getrlimit(resource.RLIMIT_CORE)),
            "vault_problem": problem,
        }

    def _list(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entries = self._open_vault().list(retired=request.get("retired") is True)
        return {"entries": [{**e.metadata(), "fingerprint": e.fingerprint} for e in entries]}

    def _get(self, request: dict[str, Any]) -> dict[str, Any]:
        entry = self._entry(_text(request, "name"))
        return {"entry": {**entry.metadata(), "fingerprint": entry.fingerprint,
                          "api_secret": entry.api_secret.reveal()}}

    def _data_key(self, _request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            key = bytes(self._open_vault()._data_key)
        return {"data_key": base64.b64encode(key).decode("ascii")}

    def _nonce(self, request: dict[str, Any]) -> dict[str, Any]:
        name, count = _text(request, "name"), _count(request)
        with self._lock:
            allocated = self._open_vault().allocate_nonces(name, count)
        return {"start": allocated.start, "stop": allocated.stop, "step": allocated.step}

    def _sign(self, request: dict[str, Any]) -> dict[str, Any]:
        name, path, data = _text(request, "name"), _text(request, "path"), _text(request, "data")
        method = request.get("method", "POST")
        if not isinstance(method, str):
            raise InvalidInputError("'method' must be text")
        with self._lock:
            vault = self._open_vault()
            entry = vault.get(name)
            signing.authorise(entry, path, method, allow_withdrawal=self.allow_withdrawal)
            nonce = vault.next_nonce(name)
        signed = signing.sign(entry, path, data, nonce)
        return {"body": signed.body, "headers": signed.headers, "nonce": signed.nonce}

    def _sign_challenge(self, request: dict[str, Any]) -> dict[str, Any]:
        entry = self._entry(_text(request, "name"))
        return {"signed": signing.challenge(entry, _text(request, "challenge"))}

    def _lock_op(self, _request: dict[str, Any]) -> dict[str, Any]:
        # The server stops after sending this answer; see AgentServer.
        return {"locked": True}

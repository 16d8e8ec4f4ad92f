"""The agent's operations on the unlocked vault, its timers, and their lock.

Transport-free: `Agent.handle` takes a decoded request and returns the response object, so
the operations can be exercised without sockets. One lock serialises every use of the vault
(reload, reads, nonce allocation); HMACs are computed outside it.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import hmac
import json
import math
import os
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import grant_ops
from ..entries import Entry
from ..errors import (
    GrantError,
    InvalidInputError,
    KeyChangedError,
    LockedError,
    ScopeError,
    VaultError,
)
from ..grant_checks import usable
from ..grant_record import Grant
from ..nonces import key_id
from ..open_vault import Vault
from ..trading_gate import PolicyGate, aliases_from_wire
from . import hardening, signing
from .freshness import DEFAULT_WINDOW, check_window
from .grant_desk import BoundEntries, GrantDesk, grant_key_digest, request_digest
from .protocol import LIST_PAGE, AgentError, error_response

__all__ = ["OPS", "Agent", "extend_proof"]

_MAX_NONCES = 100_000
# What a sign-only agent refuses: every op that hands out a secret or the data key, and
# signing by entry name (only a grant authenticates a request to such an agent).
SIGN_ONLY_REFUSED = frozenset({"get", "data_key", "nonce", "sign", "sign_challenge"})


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


def _nonce_floor(request: dict[str, Any]) -> int | None:
    """grant_sign's optional `nonce_floor`: the nonce is max(the key's next, floor), and the
    key's counter keeps it (gateways that share a key through etcd)."""
    value = request.get("nonce_floor")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise InvalidInputError("'nonce_floor' must be a whole number from 1 to 2**63 - 1")
    return value


def _seconds(request: dict[str, Any], key: str) -> float:
    value = request.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 < value < math.inf:
        raise InvalidInputError(f"{key!r} must be a positive number of seconds")
    return float(value)


def extend_proof(data_key: bytes, challenge: str) -> str:
    """What `extend` of a sign-only agent carries: proof of the data key, for a challenge
    the agent gave (`status`), so the key itself never travels."""
    return hmac.new(data_key, b"botvault extend " + challenge.encode("ascii", "replace"),
                    "sha256").hexdigest()


def _failed(exc: Exception) -> dict[str, Any]:
    """The response to a request that raised `exc`: opaque beyond what a VaultError says."""
    if isinstance(exc, VaultError):
        return error_response(exc)
    if isinstance(exc, OSError):
        # Paths and errno only: no secret reaches an OSError's text.
        return error_response(AgentError(f"the agent could not complete the request: "
                                         f"{exc.strerror or type(exc).__name__}"))
    # The class name only: a message might quote data the request carried.
    return error_response(AgentError(f"the agent failed: {type(exc).__name__}"))


def _refuse_if_secret_bearing(op: str) -> None:
    if op in SIGN_ONLY_REFUSED:
        raise ScopeError(
            "this agent was unlocked with --sign-only: it hands out no secret and signs "
            "only what a grant authenticates",
            hint="sign with a grant (botvault grant add; the gateway or "
                 "AgentClient.sign_with_grant), or open the vault with its passphrase")


# Every op the agent answers, and the method that answers it: the one list (tests draw from
# OPS; the protocol module names none).
_OP_METHODS = {
    "status": "_status", "list": "_list", "get": "_get", "data_key": "_data_key",
    "nonce": "_nonce", "sign": "_sign", "sign_challenge": "_sign_challenge",
    "lock": "_lock_op", "extend": "_extend", "grant_resolve": "_grant_resolve",
    "grant_sign": "_grant_sign", "grant_verify": "_grant_verify", "grant_keys": "_grant_keys",
    "grant_learn": "_grant_learn",
}
# The fields of a grant-signed request as the bot sent it (what a ticket binds).
_GRANT_FIELDS = ("grant_key", "path", "method", "body", "signature", "nonce_header",
                 "content_type")
OPS = frozenset(_OP_METHODS)


class Agent:
    """An unlocked vault with an absolute and an idle expiry on a monotonic clock."""

    def __init__(self, vault: Vault, *, ttl: float, idle: float, allow_withdrawal: bool,
                 sign_only: bool = False, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if not (0 < ttl < math.inf and 0 < idle < math.inf):
            raise InvalidInputError("the agent's ttl and idle time must be positive and finite")
        self._vault: Vault | None = vault
        self._lock = threading.Lock()
        self._clock = clock
        self._expires_at = clock() + ttl
        self._idle = idle
        self._last_use = clock()
        self.allow_withdrawal = allow_withdrawal
        self.sign_only = sign_only
        self._wall_clock = wall_clock  # grant expiry: stored as wall-clock time
        self._grants = grant_ops.GrantIndex()
        self._desk = GrantDesk(clock)
        self._bound = BoundEntries()  # each grant's entry, for the vault's generation
        # What a sign-only agent's `extend` must be proven against (see `extend_proof`).
        self._extend_challenge = os.urandom(16).hex()
        self.path = vault.path
        self._policy = PolicyGate(vault.path, clock=wall_clock)  # grants' trading policies
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            op: getattr(self, method) for op, method in _OP_METHODS.items()}

    # -- timers ------------------------------------------------------------------------

    def time_left(self) -> float:
        """Seconds until the agent must lock (either limit), never below 0."""
        if self._vault is None:
            return 0.0  # locked itself (the passphrase changed): the server stops
        now = self._clock()
        return max(0.0, min(self._expires_at, self._last_use + self._idle) - now)

    # -- dispatch ----------------------------------------------------------------------

    def handles(self, op: object) -> bool:
        return isinstance(op, str) and op in self._handlers

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """The response to one request whose op `handles` accepted. Every op is a use."""
        self._last_use = self._clock()
        op = request["op"]
        try:
            if self.sign_only:
                _refuse_if_secret_bearing(op)
            return {"ok": True, **self._handlers[op](request)}
        except Exception as exc:
            return _failed(exc)

    def handle_nonce(self, request: dict[str, Any]) -> range | dict[str, Any]:
        """`handle` of a `nonce` request: the nonces allocated, or the error response. The
        server writes their answer without a dict (every request of a bot asks this)."""
        if self.sign_only:
            return self.handle(request)  # refused, as handle says
        self._last_use = self._clock()
        try:
            return self._allocate(request)
        except Exception as exc:
            return _failed(exc)

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
        try:
            self._vault.reload()
        except KeyChangedError:
            # The old data key opens nothing saved from now on: wipe it and lock.
            self._vault.close()
            self._vault = None
            raise LockedError("the vault's passphrase was changed; the agent locked itself",
                              hint="run: botvault unlock") from None
        return self._vault

    def _entry(self, name: str) -> Entry:
        with self._lock:
            return self._open_vault().get(name)

    def _extend(self, request: dict[str, Any]) -> dict[str, Any]:
        """A later absolute expiry (never an earlier one) and/or a new idle limit: what
        `botvault unlock --ttl/--idle` does to an agent that is already running."""
        now = self._clock()
        with self._lock:
            if self.sign_only:
                self._check_extend_proof(request.get("proof"))
            if request.get("ttl") is not None:
                self._expires_at = max(self._expires_at, now + _seconds(request, "ttl"))
            if request.get("idle") is not None:
                self._idle = _seconds(request, "idle")
        return {"expires_in": self._expires_at - now, "idle_expires_in": self._idle}

    def _check_extend_proof(self, proof: object) -> None:
        """A sign-only agent lives longer only for someone who knows the passphrase: the
        proof is an HMAC under the data key (which the passphrase opens) of a challenge
        that changes after each use. Any process of the user can still stop it. Lock held."""
        if self._vault is None:
            raise LockedError("the agent is locking", hint="run: botvault unlock")
        expected = extend_proof(self._vault.hand_out_data_key(), self._extend_challenge)
        if not isinstance(proof, str) or not hmac.compare_digest(
                expected.encode(), proof.encode("utf-8", "surrogatepass")):
            raise ScopeError("a --sign-only agent's lifetime is extended only with the "
                             "vault's passphrase",
                             hint="run botvault unlock --ttl/--idle: it asks for it")
        self._extend_challenge = os.urandom(16).hex()

    def _status(self, _request: dict[str, Any]) -> dict[str, Any]:
        now = self._clock()
        problem: str | None = None
        with self._lock:
            if self._vault is None:
                raise LockedError("the agent is locking", hint="run: botvault unlock")
            try:
                self._open_vault()
            except LockedError:
                raise
            except VaultError as exc:
                # Still unlocked, and saying so matters more here than the file's state
                # (moved, replaced): every op that reads entries reports that itself.
                problem = exc.message
            generation = self._vault.generation if self._vault is not None else None
        return {
            "unlocked": True, "vault": str(self.path), "pid": os.getpid(),
            "expires_in": max(0.0, self._expires_at - now),
            "idle_expires_in": max(0.0, self._last_use + self._idle - now),
            "allow_withdrawal": self.allow_withdrawal, "generation": generation,
            "sign_only": self.sign_only,
            "extend_challenge": self._extend_challenge if self.sign_only else None,
            "dumpable": hardening.is_dumpable(),
            "core_limit": list(resource.getrlimit(resource.RLIMIT_CORE)),
            "vault_problem": problem,
        }

    def _list(self, request: dict[str, Any]) -> dict[str, Any]:
        """Every entry's metadata; with `page`, those after the name `after` that fit in
        one page, and `next` (the name to continue after) while more remain."""
        with self._lock:
            vault = self._open_vault()
            entries = vault.list(retired=request.get("retired") is True)
            generation = vault.generation
        docs = [{**e.metadata(), "fingerprint": e.fingerprint} for e in entries]
        if request.get("page") is not True:
            return {"entries": docs}
        after = request.get("after")
        if after is not None and not isinstance(after, str):
            raise InvalidInputError("'after' must be an entry name")
        names = [e.name for e in entries]
        start = 0 if after is None else bisect.bisect_right(names, after)
        page: list[dict[str, Any]] = []
        size = 0
        for doc in docs[start:]:
            cost = len(json.dumps(doc, separators=(",", ":"))) + 1
            if page and size + cost > LIST_PAGE:
                break
            page.append(doc)
            size += cost
        more = start + len(page) < len(docs)
        return {"entries": page, "next": page[-1]["name"] if more else None,
                "generation": generation}

    def _get(self, request: dict[str, Any]) -> dict[str, Any]:
        entry = self._entry(_text(request, "name"))
        return {"entry": entry.to_wire()}

    def _data_key(self, _request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            key = self._open_vault().hand_out_data_key()
        return {"data_key": base64.b64encode(key).decode("ascii")}

    def _nonce(self, request: dict[str, Any]) -> dict[str, Any]:
        allocated = self._allocate(request)
        return {"start": allocated.start, "stop": allocated.stop, "step": 1}

    def _allocate(self, request: dict[str, Any]) -> range:
        # The hot path (bench/bench_agent.py): _text and _count's rules, inlined.
        name, count = request.get("name"), request.get("count", 1)
        if type(name) is not str:
            name = _text(request, "name")
        if type(count) is not int or not 1 <= count <= _MAX_NONCES:
            count = _count(request)
        with self._lock:
            return self._open_vault().allocate_nonces(name, count)

    def _sign(self, request: dict[str, Any]) -> dict[str, Any]:
        name, path, data = _text(request, "name"), _text(request, "path"), _text(request, "data")
        method = request.get("method", "POST")
        if not isinstance(method, str):
            raise InvalidInputError("'method' must be text")
        signed = signing.sign_request(self._open_vault, name, path, data, method,
                                      allow_withdrawal=self.allow_withdrawal, guard=self._lock)
        return {"body": signed.body, "headers": signed.headers, "nonce": signed.nonce}

    def _sign_challenge(self, request: dict[str, Any]) -> dict[str, Any]:
        entry = self._entry(_text(request, "name"))
        return {"signed": signing.challenge(entry, _text(request, "challenge"))}

    def _lock_op(self, _request: dict[str, Any]) -> dict[str, Any]:
        # The server stops after sending this answer; see AgentServer.
        return {"locked": True}

    # -- grants (the gateway's ops) ----------------------------------------------------

    def _grant_target(self, vault: Vault, grant_key: str) -> tuple[Grant, Entry]:
        """The usable grant with this key and its entry, or GrantError. Lock held."""
        grant = usable(self._grants.find(vault, grant_key), self._wall_clock())
        return grant, self._bound.entry_of(vault, grant)

    def _grant_resolve(self, request: dict[str, Any]) -> dict[str, Any]:
        grant_key = _text(request, "grant_key")
        with self._lock:
            grant, entry = self._grant_target(self._open_vault(), grant_key)
        return {"grant": grant.bot, "entry": entry.name, "exchange": entry.exchange,
                "key_id": key_id(entry.exchange, entry.api_key),
                "expires_at": grant.expires_at, "policy": grant.policy.to_doc()}

    def _grant_keys(self, _request: dict[str, Any]) -> dict[str, Any]:
        """Short digests of every grant's api key (public, as an exchange's api key), so
        the gateway refuses a key no grant has without asking the agent each time."""
        with self._lock:
            keys = [grant_key_digest(g.api_key) for g in grant_ops.list_grants(self._open_vault())]
        return {"keys": keys}

    def _checked(self, fields: dict[str, str], window: float, exchange: object = None
                 ) -> tuple[Grant, Entry]:
        """The grant and entry of a grant-signed request whose signature, scope and
        freshness hold (GrantError / ScopeError else). Allocates nothing. With `exchange`,
        a grant for another exchange's key is unknown there, as Kraken would say."""
        if fields["content_type"] not in signing.CONTENT_TYPES:
            raise InvalidInputError("'content_type' must be form or json")
        with self._lock:
            vault = self._open_vault()
            grant, entry = self._grant_target(vault, fields["grant_key"])
        if exchange is not None and exchange != entry.exchange:
            raise GrantError("unknown", "no grant for this exchange has this api key")
        signing.check_grant_signature(grant, entry.exchange, fields["path"], fields["body"],
                                      fields["signature"], fields["nonce_header"],
                                      fields["content_type"])
        signing.authorise(entry, fields["path"], fields["method"],
                          allow_withdrawal=self.allow_withdrawal, grant=grant)
        spot = entry.exchange == "kraken-spot"
        nonce_text = (signing.bot_nonce(fields["body"], fields["content_type"]) if spot
                      else fields["nonce_header"])
        self._desk.freshness.admit(
            fields["grant_key"], fields["signature"], nonce_text, window=window,
            now=self._wall_clock(), required=spot or grant.require_nonce)
        return grant, entry

    def _grant_verify(self, request: dict[str, Any]) -> dict[str, Any]:
        """Step one of the gateway's two: check a bot's request (signature, scope, replay
        window) without the real key's nonce, and hand back a one-time ticket that
        `grant_sign` redeems for these exact bytes (see grant_desk)."""
        fields = {k: _text(request, k) for k in _GRANT_FIELDS}
        window = check_window(request.get("window", DEFAULT_WINDOW))
        hold = _seconds(request, "hold")
        grant, entry = self._checked(fields, window, request.get("exchange"))
        ticket = self._desk.issue(request_digest(fields[k] for k in _GRANT_FIELDS), hold)
        return {"ticket": ticket, "grant": grant.bot, "entry": entry.name,
                "exchange": entry.exchange, "key_id": key_id(entry.exchange, entry.api_key),
                "expires_at": grant.expires_at, "policy": grant.policy.to_doc()}

    def _grant_sign(self, request: dict[str, Any]) -> dict[str, Any]:
        """Sign a bot's grant-signed request with the real key and its next nonce. With a
        `ticket` from `grant_verify`, for the bytes it was issued for, the grant checked
        again (revoked or expired since: refused); without one, every check of
        `grant_verify` first, in the same call. A refused request costs no nonce."""
        fields = {k: _text(request, k) for k in _GRANT_FIELDS}
        expected_key = _text(request, "key_id")
        ticket = request.get("ticket")
        if ticket is None:  # both steps in one: every check of grant_verify first
            self._checked(fields, check_window(request.get("window", DEFAULT_WINDOW)),
                          request.get("exchange"))
        elif not isinstance(ticket, str):
            raise InvalidInputError("'ticket' must be text")
        path, body = fields["path"], fields["body"]
        with self._lock:
            vault = self._open_vault()
            grant, entry = self._grant_target(vault, fields["grant_key"])
            if not hmac.compare_digest(key_id(entry.exchange, entry.api_key), expected_key):
                # The ticket stays: the gateway asks again under the new key's order.
                raise GrantError("changed", f"grant {grant.bot!r} now points at another key",
                                 hint="resolve the grant again")
            if ticket is not None:
                self._desk.redeem(ticket, request_digest(fields[k] for k in _GRANT_FIELDS))
            signing.authorise(entry, path, fields["method"],
                              allow_withdrawal=self.allow_withdrawal, grant=grant)
            placed = self._policy.enforce(grant.bot, grant.policy, entry.exchange, path,
                                          fields["method"], body, fields["content_type"],
                                          aliases_from_wire(request.get("aliases")))
            nonce = vault.next_nonce(entry.name, _nonce_floor(request))
            self._policy.signed(grant.bot, nonce, placed)
        signed = signing.sign_for_grant(entry, path, body, nonce, fields["content_type"])
        return {"body": signed.body, "headers": signed.headers, "nonce": signed.nonce,
                "entry": entry.name, "grant": grant.bot}

    def _grant_learn(self, request: dict[str, Any]) -> dict[str, Any]:
        """Kraken's ids for the orders a request this agent signed placed (the gateway reads
        them from the answer), so an edit or amend naming them can be judged against them."""
        grant_key, nonce, ids = _text(request, "grant_key"), request.get("nonce"), \
            request.get("order_ids")
        if isinstance(nonce, bool) or not isinstance(nonce, int) or not isinstance(ids, list) \
                or not all(i is None or (isinstance(i, str) and 0 < len(i) <= 100)
                           for i in ids):
            raise InvalidInputError("'nonce' must be a number and 'order_ids' a list of ids")
        with self._lock:
            grant, _entry = self._grant_target(self._open_vault(), grant_key)
            self._policy.learn(grant.bot, nonce, ids)
        return {}

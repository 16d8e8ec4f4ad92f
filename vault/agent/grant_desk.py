"""What the agent keeps between a grant-signed request's check and its signing.

The gateway checks a request in two steps so that cheap refusals come first and the real
key's order is taken only for a request that holds: `grant_verify` (signature, scope,
freshness: no nonce of the real key, no lock of the gateway's) hands back a one-time
ticket; `grant_sign` redeems it under the key's order, right before the request is sent,
re-checking that the grant is still usable (a revocation between the two refuses it).

A ticket holds only a digest of the request it was issued for, so redeeming it for other
bytes fails; tickets expire (a request may wait in the key's order up to the gateway's
bound) and are bounded in number.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .. import grant_ops
from ..errors import GrantError
from .freshness import Freshness

if TYPE_CHECKING:
    from ..entries import Entry
    from ..grant_record import Grant
    from ..open_vault import Vault

__all__ = ["MAX_HOLD", "MAX_TICKETS", "BoundEntries", "GrantDesk", "grant_key_digest",
           "request_digest"]

MAX_HOLD = 3700.0  # the gateway's --max-wait is at most 3600 s
MAX_TICKETS = 100_000


def request_digest(fields: Iterable[str]) -> bytes:
    """The digest a ticket binds: every field of the request as the bot sent it."""
    return hashlib.sha256(json.dumps(list(fields)).encode("utf-8", "surrogatepass")).digest()


def grant_key_digest(grant_key: str) -> str:
    """A short digest of a grant's api key (the gateway's list of known grants)."""
    return hashlib.blake2b(grant_key.encode("utf-8", "surrogatepass"),
                           digest_size=8).hexdigest()


class GrantDesk:
    """The replay memory and the outstanding tickets of one agent. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.freshness = Freshness()
        self._clock = clock
        self._lock = threading.Lock()
        self._tickets: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def issue(self, digest: bytes, hold: float) -> str:
        ticket = os.urandom(16).hex()
        now = self._clock()
        with self._lock:
            self._expire(now)
            if len(self._tickets) >= MAX_TICKETS:
                raise GrantError("busy", "too many requests wait to be signed")
            self._tickets[ticket] = (digest, now + min(hold, MAX_HOLD))
        return ticket

    def redeem(self, ticket: str, digest: bytes) -> None:
        """Use `ticket` once for the request with this digest, or GrantError("stale")."""
        with self._lock:
            held = self._tickets.pop(ticket, None)
        if held is None or held[1] < self._clock() or not hmac.compare_digest(held[0], digest):
            raise GrantError("stale", "this request's check has expired or was used",
                             hint="send the request again, signed anew")

    def _expire(self, now: float) -> None:
        # Issued in order with one hold each, so mostly oldest first; a longer hold behind a
        # shorter one waits for it (bounded by MAX_TICKETS all the same).
        while self._tickets:
            ticket, (_, until) = next(iter(self._tickets.items()))
            if until >= now:
                return
            del self._tickets[ticket]


class BoundEntries:
    """The entry each grant signs with (`grant_ops.entry_of`, a scan of every entry), found
    once per grant for each generation of the vault rather than on every request: a vault of
    2,000 entries made each grant_sign cost 18 signs (bench/bench_grants.py). Every save,
    here or in another process, makes a new generation, as `grant_ops.GrantIndex` relies on.
    Not thread-safe: the agent asks it under its lock."""

    def __init__(self) -> None:
        self._seen: tuple[bytes, int] | None = None
        self._found: dict[tuple[str, str], Entry] = {}

    def entry_of(self, vault: Vault, grant: Grant) -> Entry:
        seen = (vault.vault_id, vault.generation)
        if seen != self._seen:
            self._found, self._seen = {}, seen
        key = (grant.pair, grant.key_id)  # what entry_of reads of the grant
        entry = self._found.get(key)
        if entry is None:  # GrantError("orphaned") is raised again each time: not kept
            entry = self._found[key] = grant_ops.entry_of(vault, grant)
        return entry

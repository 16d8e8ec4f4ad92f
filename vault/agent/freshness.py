"""Replay refusal for grant-signed requests: each one is accepted at most once, and only
while its nonce, read as time, lies within a window of the agent's clock.

A bot's nonce need not be new at the exchange (the gateway puts in the key's own), so
without this a captured grant-signed request (from a squatter on the gateway's port, say)
could be sent again and again until the grant is revoked. The agent is the trust anchor
that verifies grant signatures, so it keeps what was seen: one short digest per accepted
request, forgotten once its nonce has left the window (a replay after that is refused as
stale).

The unit is read from the nonce's magnitude: clients send milliseconds (ccxt, krakenex) or
10 ns ticks (python-kraken-sdk), whatever unit the real key uses (the gateway replaces the
nonce with the key's own), and today's time in one unit is 100 to 1000 times today's time
in the next, so at most one reading lies within a window of minutes.

Two byte-identical requests are indistinguishable from a replay: a grant shared by two
processes that sign the same request in the same clock tick gets the second refused, as
Kraken refuses a repeated nonce. One grant per bot process avoids it.
"""

from __future__ import annotations

import hashlib
import heapq
import threading

from ..errors import GrantError, InvalidInputError

__all__ = ["DEFAULT_WINDOW", "MAX_SEEN", "MAX_WINDOW", "Freshness", "check_window",
           "nonce_time"]

DEFAULT_WINDOW = 10.0  # seconds either side of the clock (see docs: why ten)
MAX_WINDOW = 300.0
MAX_SEEN = 1_000_000  # digests held at most; beyond it, new requests wait for room
# Ticks per second of each unit a client may count its nonce in.
_UNITS = (1e3, 1e6, 1e8, 1e9)


def check_window(value: object) -> float:
    """A replay window in seconds: from 1 to MAX_WINDOW (InvalidInputError else)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 1 <= value <= MAX_WINDOW:
        raise InvalidInputError(f"the replay window is from 1 to {MAX_WINDOW:g} seconds")
    return float(value)


def nonce_time(nonce: int, now: float, window: float) -> float | None:
    """The wall-clock time `nonce` stands for, in the one unit whose reading lies within
    `window` seconds of `now`; None when no unit does."""
    for per_second in _UNITS:
        moment = nonce / per_second
        if abs(moment - now) <= window:
            return moment
    return None


class Freshness:
    """The digests of accepted grant-signed requests, each kept until its nonce is stale.

    Thread-safe. A digest is forgotten only once its request would be refused as stale
    anyway: its nonce's time plus the largest window ever used (a gateway restarted with a
    wider window cannot reopen what a narrower one forgot).
    """

    def __init__(self, *, max_seen: int = MAX_SEEN) -> None:
        self._lock = threading.Lock()
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[float, bytes]] = []
        self._horizon = DEFAULT_WINDOW
        self._max_seen = max_seen

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, grant_key: str, signature: str, nonce_text: str, *, window: float,
              now: float, required: bool) -> None:
        """Accept this request once, or GrantError("replayed"/"stale"). A request without
        a nonce (Futures allows it) is accepted unless `required`."""
        if not nonce_text:
            if required:
                raise GrantError("stale", "this grant requires a nonce on every request",
                                 hint="send the Nonce header (milliseconds)")
            return
        if not (nonce_text.isascii() and nonce_text.isdigit()) or len(nonce_text) > 20:
            raise InvalidInputError("the request's nonce is not a whole number")
        moment = nonce_time(int(nonce_text), now, window)
        if moment is None:
            raise GrantError("stale", f"the request's nonce is not within {window:g} s of "
                             "the clock", hint="sign each request with a nonce from the "
                             "current time (milliseconds or 10 ns ticks)")
        digest = hashlib.blake2b(f"{grant_key}\0{signature}".encode("utf-8", "surrogatepass"),
                                 digest_size=16).digest()
        with self._lock:
            self._horizon = max(self._horizon, window)
            self._forget(now)
            if digest in self._seen:
                raise GrantError("replayed", "this request was accepted once already",
                                 hint="sign every request anew, with a new nonce")
            if len(self._seen) >= self._max_seen:
                raise GrantError("busy", "too many recent requests to check for replays")
            self._seen.add(digest)
            heapq.heappush(self._expiry, (moment, digest))

    def _forget(self, now: float) -> None:
        # By the current horizon, the widest window so far, not the one of insertion time.
        while self._expiry and self._expiry[0][0] + self._horizon < now:
            _, digest = heapq.heappop(self._expiry)
            self._seen.discard(digest)

"""Kraken's per-key rate counters, modelled so requests wait instead of being rejected, and
shared by every process that signs for the key on this machine.

Both Kraken counters are leaky buckets: Spot's REST counter rises by a call's cost and decays
at a fixed rate up to a maximum (15/20/20, decaying 0.33/0.5/1 per second for the
starter/intermediate/pro tiers; ledger and trade-history calls cost 2, AddOrder and
CancelOrder are outside it), Futures' budget is 500 cost units per 10 s (decay 50 per second)
at per-endpoint costs (batchorder 9 + the batch's size).

A sender asks `Governor.admit` holding the key's request order (`request_lock.KeyOrder`),
right before sending: a request that would take the counter over waits (still holding the
order, so later arrivals queue behind it), and is counted when it goes. Only requests really
sent are counted. Each send is counted a moment (`SLACK` seconds of decay) early, which covers
how much later than the sender's clock says the request may reach the exchange's counter.

**One counter per key, whoever sends.** The gateway and the in-process integrations (ccxt,
python-kraken-sdk, krakenex through the agent) of one machine keep a key's counter in one
place, `FileRateState`: `VAULT.requests/<key id>.rate`, beside the key's request-order lock,
keyed like it and the nonce counter (exchange + api key), a private file (`botvault.private`)
read and written under an exclusive flock. Its clock is CLOCK_MONOTONIC, which every process
of the machine shares. It is not fsynced: it describes the last minute at most (the counters
decay within that), and after a power loss Kraken's counter has decayed too.
The state is behind a small interface (`RateState.update`): a state shared by several
machines (etcd) goes behind the same one.

Pure arithmetic on an injectable clock in `Bucket`; nothing here sleeps.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl

from . import private
from .exchanges.endpoints import KRAKEN_FUTURES, normalise_path
from .request_lock import requests_dir

__all__ = [
    "FUTURES_BUDGET",
    "FUTURES_COSTS",
    "SLACK",
    "SPOT_TIERS",
    "TIER_OFF",
    "TIER_VARIABLE",
    "Bucket",
    "FileRateState",
    "Governor",
    "MemoryRateState",
    "RateState",
    "futures_cost",
    "shared_governor",
    "spot_cost",
]

SPOT_TIERS: dict[str, tuple[float, float]] = {
    "starter": (15.0, 0.33), "intermediate": (20.0, 0.5), "pro": (20.0, 1.0)}
_SPOT_COST_2 = frozenset({"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"})
_SPOT_UNCOUNTED = frozenset({"AddOrder", "CancelOrder"})

FUTURES_BUDGET, FUTURES_DECAY = 500.0, 50.0  # 500 units per 10 s
# Kraken Futures' documented costs per endpoint (REST "API limits"); unlisted ones cost 1.
FUTURES_COSTS: dict[str, int] = {
    "sendorder": 10, "editorder": 10, "cancelorder": 10, "batchorder": 9,
    "cancelallorders": 25, "cancelallordersafter": 25, "accounts": 2, "openpositions": 2,
    "openorders": 2, "fills": 2, "recentorders": 2, "orders/status": 1, "transfer": 10,
    "transfer/subaccount": 10, "withdrawal": 100, "leveragepreferences": 2,
    "pnlpreferences": 2, "unwindqueue": 2, "notifications": 2, "subaccounts": 2,
}
# The tier the in-process integrations pace by: $BOTVAULT_KRAKEN_TIER, else the lowest, so
# they never outrun Kraken's counter. "off" turns their pacing off (the gateway always paces).
TIER_VARIABLE = "BOTVAULT_KRAKEN_TIER"
_DEFAULT_TIER = "starter"
TIER_OFF = "off"


def spot_cost(endpoint: str) -> int:
    """The Spot REST counter cost of `/0/private/<name>` (0: outside the counter)."""
    name = endpoint.removeprefix("/0/private/")
    if name in _SPOT_UNCOUNTED:
        return 0
    return 2 if name in _SPOT_COST_2 else 1


def futures_cost(endpoint: str, post_data: str = "") -> int:
    """The Futures cost of a normalised endpoint (`/api/v3/sendorder`). batchorder costs 9 +
    the number of instructions in its `json` field (9 when that cannot be read: Kraken then
    refuses it anyway)."""
    name = endpoint.removeprefix("/api/v3/")
    if name != "batchorder":
        return FUTURES_COSTS.get(name, 1)
    try:
        doc = json.loads(dict(parse_qsl(post_data)).get("json", "") or "{}")
        batch = doc.get("batchOrder", doc.get("batch_order", [])) if isinstance(doc, dict) \
            else []
    except ValueError:
        batch = []
    return 9 + (len(batch) if isinstance(batch, list) else 0)


# Seconds of decay held back at every send: the variation in how long a request takes from
# the sender's check to the exchange's counter (loopback and a local agent: well below).
SLACK = 0.05


@dataclass
class Bucket:
    """One key's counter: `level` as of time `at`, counted when requests were sent."""

    maximum: float
    decay: float
    level: float = 0.0
    at: float = float("-inf")

    def admit(self, cost: float, now: float) -> float:
        """Seconds to wait before sending now (0: send), by the counter of real sends."""
        if cost <= 0:
            return 0.0
        level = max(0.0, self.level - max(0.0, now - self.at) * self.decay)
        excess = level + cost - (self.maximum - SLACK * self.decay)
        # Below a nanosecond's worth is rounding: waiting it would not move a float clock.
        return excess / self.decay if excess > 1e-9 else 0.0

    def record(self, cost: float, now: float) -> None:
        """Count a request sent at `now` (after `admit` said 0)."""
        if cost > 0:
            level = max(0.0, self.level - max(0.0, now - self.at) * self.decay)
            self.level, self.at = level + cost, max(now, self.at)


Step = Callable[[float, float], tuple[float, float, float]]
"""(level, at) -> (new level, new at, seconds to wait): one admission, applied atomically."""


class RateState(Protocol):
    """Where one key's (level, at) lives. `update` applies `step` atomically: no other
    update of the same key interleaves (one process's threads, other processes, or with a
    shared backend other machines). Returns the wait `step` gave."""

    def update(self, key_id: str, step: Step) -> float: ...


class MemoryRateState:
    """This process only (tests, and a gateway told not to share)."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def update(self, key_id: str, step: Step) -> float:
        with self._lock:
            level, at = self._values.get(key_id, (0.0, float("-inf")))
            new_level, new_at, wait = step(level, at)
            self._values[key_id] = (new_level, new_at)
            return wait


_RECORD = struct.Struct("<dd")  # level, at (CLOCK_MONOTONIC seconds)


class FileRateState:
    """Every process of this machine: `VAULT.requests/<key id>.rate` under flock."""

    def __init__(self, vault_path: str | os.PathLike[str]) -> None:
        self.directory = requests_dir(Path(vault_path))
        self._lock = threading.Lock()  # flock is per open file; threads share ours

    def update(self, key_id: str, step: Step) -> float:
        path = self.directory / f"{key_id}.rate"
        with self._lock:
            fd = self._open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                raw = os.pread(fd, _RECORD.size, 0)
                level, at = _RECORD.unpack(raw) if len(raw) == _RECORD.size else (
                    0.0, float("-inf"))
                new_level, new_at, wait = step(level, at)
                if (new_level, new_at) != (level, at):
                    os.pwrite(fd, _RECORD.pack(new_level, new_at), 0)
                return wait
            finally:
                os.close(fd)  # releases the flock

    def _open(self, path: Path) -> int:
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(self.directory, 0o700)  # mkdir's mode is masked by the umask
        private.check_dir(self.directory, "the request-lock directory", private.DirRule.CLOSED)
        return private.open_private_file(path, os.O_RDWR | os.O_CREAT, "a key's rate counter")


class Governor:
    """Kraken's counters of every key, kept in `state` (this process's memory by default)."""

    def __init__(self, tier: str, *, clock: Callable[[], float] = time.monotonic,
                 state: RateState | None = None) -> None:
        self.spot_maximum, self.spot_decay = SPOT_TIERS[tier]
        self.clock = clock
        self.state: RateState = state if state is not None else MemoryRateState()

    def admit(self, product: str, key_id: str, endpoint: str, post_data: str = "") -> float:
        """Holding the key's order: seconds to wait before sending; 0 counts the send.

        `product` is "spot" or "futures" (the gateway's `Api`), `endpoint` the normalised
        path (`/0/private/Balance`, `/api/v3/sendorder`)."""
        if product == "spot":
            cost, maximum, decay = spot_cost(endpoint), self.spot_maximum, self.spot_decay
        else:
            cost, maximum, decay = futures_cost(endpoint, post_data), FUTURES_BUDGET, \
                FUTURES_DECAY
        if cost <= 0:
            return 0.0
        now = self.clock()

        def step(level: float, at: float) -> tuple[float, float, float]:
            bucket = Bucket(maximum, decay, level, at)
            wait = bucket.admit(cost, now)
            if wait == 0:
                bucket.record(cost, now)
            return bucket.level, bucket.at, wait

        return self.state.update(key_id, step)

    def admit_path(self, exchange: str, key_id: str, path: str, post_data: str = "") -> float:
        """`admit` for a request path as a client sends it (`/derivatives/api/v3/...`)."""
        product = "futures" if exchange == KRAKEN_FUTURES else "spot"
        return self.admit(product, key_id, normalise_path(exchange, path), post_data)


_shared: dict[tuple[str, str], Governor] = {}
_shared_lock = threading.Lock()


def shared_governor(vault_path: str | os.PathLike[str], tier: str | None = None
                    ) -> Governor | None:
    """This process's governor over the machine-wide counters of the vault's keys; None when
    pacing is off.

    `tier` defaults to $BOTVAULT_KRAKEN_TIER, else starter (the lowest, which never outruns
    Kraken's counter)."""
    chosen = tier or os.environ.get(TIER_VARIABLE) or _DEFAULT_TIER
    if chosen == TIER_OFF:
        return None
    if chosen not in SPOT_TIERS:
        from .errors import InvalidInputError

        raise InvalidInputError(f"unknown Kraken tier {chosen!r}",
                                hint=f"one of {', '.join(SPOT_TIERS)} or {TIER_OFF} "
                                     f"(${TIER_VARIABLE})")
    key = (os.fspath(Path(vault_path)), chosen)
    with _shared_lock:
        governor = _shared.get(key)
        if governor is None:
            governor = _shared[key] = Governor(chosen, state=FileRateState(vault_path))
        return governor

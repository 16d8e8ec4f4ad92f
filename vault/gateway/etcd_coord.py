"""A key's turn shared by several gateways through etcd: its order, nonce floor and rate.

For each real key (its id: a hash of exchange and api key, the local counter's id; no
secret and no grant goes to etcd) the cluster holds, under `<prefix><key id>/`:

- `nonce`: the last nonce any gateway sent with the key;
- `rate`: the key's rate counter (`governor.Bucket`'s level, and when, in wall-clock time);
- `lock/<token>`: one waiter per request in the key's queue, each attached to its gateway's
  lease. The holder is the oldest (lowest create revision): etcd's own lock recipe, written
  out so that a call retried on another member after a member died is idempotent (the
  waiter's name is the request's own token).

A turn: take the key's local `KeyOrder` (this machine's other requests and in-process bots
queue there, so each gateway has at most one waiter per key in etcd), put our waiter, wait
until it is the oldest, and read `nonce` and `rate` in the same transaction. The agent then
signs with a nonce at least `nonce + 1` (`nonce_floor`; it takes max(its own next, floor)
and keeps its counter above it, so a key's first use through etcd starts above every nonce
this machine handed out, and a machine joining later starts above etcd's value). `commit`
writes the new nonce and rate in one transaction that holds only while our waiter still
exists with its create revision and `nonce` is unchanged (compare-and-swap, fenced by the
lock): a lease that expired meanwhile, or any other writer, makes it fail and the request
is refused unsent. Only then is the request sent; the waiter is deleted after the answer.

A gateway that dies holding a key loses the lock when its lease expires (`lease_ttl`
seconds); the lease is kept alive every third of that while the gateway runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from ..rate_limits import FUTURES_BUDGET, FUTURES_DECAY, Bucket, Governor, futures_cost, spot_cost
from ..request_lock import KeyOrder, RequestLockTimeout
from .coordination import CoordinationUnavailable, Turn, TurnTimeout, wait_for_rate
from .etcd_api import EtcdClient, EtcdUnavailable, b64, unb64
from .etcd_settings import EtcdSettings
from .kraken_errors import Api

__all__ = ["EtcdCoordinator"]

_POLL_FIRST, _POLL_MAX = 0.002, 0.01  # waiting for the waiter ahead to go
_SLICE = 0.025  # longest a gateway keeps a key's lock for its own queue while others wait


def _prefix_end(prefix: str) -> str:
    raw = prefix.encode()
    return b64(raw[:-1] + bytes([raw[-1] + 1]))


def _range(key: str, *, end: str | None = None, first: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {"key": b64(key)}
    if end is not None:
        doc["range_end"] = end
    if first:
        doc.update(sort_order="ASCEND", sort_target="CREATE", limit=1)
    return {"request_range": doc}


def _kvs(response: dict[str, Any]) -> list[dict[str, Any]]:
    return list(response.get("response_range", {}).get("kvs", []))


class _Lease:
    """This gateway's lease; its waiters die with it."""

    def __init__(self, client: EtcdClient, ttl: int) -> None:
        self.client, self.ttl = client, ttl
        self.id: str | None = None
        self._granting = asyncio.Lock()

    async def get(self) -> str:
        async with self._granting:
            if self.id is None:
                answer = await self.client.call("lease/grant", {"TTL": self.ttl})
                self.id = str(answer["ID"])
            return self.id

    def drop(self, lease: str) -> None:
        """Stop keeping `lease` alive: whatever it holds goes when it expires."""
        if self.id == lease:
            self.id = None

    async def keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            lease = self.id
            if lease is None:
                continue
            try:
                answer = await self.client.call("lease/keepalive", {"ID": lease},
                                                timeout=self.ttl / 3)
            except EtcdUnavailable:
                continue  # commits are fenced: a lease lost meanwhile refuses, never sends
            if not int(answer.get("result", {}).get("TTL", 0) or 0):
                self.drop(lease)  # it expired: the next request takes a new one

    async def revoke(self) -> None:
        if self.id is not None:
            with contextlib.suppress(EtcdUnavailable):
                await self.client.call("lease/revoke", {"ID": self.id}, timeout=1.0)
            self.id = None


class _EtcdTurn:
    def __init__(self, owner: EtcdCoordinator, base: str, waiter: str, revision: str,
                 nonce_kv: dict[str, Any] | None, rate_kv: dict[str, Any] | None,
                 deadline: float) -> None:
        self._owner, self._base, self.waiter, self._revision = owner, base, waiter, revision
        self._deadline = deadline
        self._nonce_rev = str(nonce_kv.get("mod_revision", "0")) if nonce_kv else "0"
        self.last_nonce = int(unb64(nonce_kv["value"])) if nonce_kv else 0
        self.nonce_floor: int | None = self.last_nonce + 1
        self._rate = json.loads(unb64(rate_kv["value"])) if rate_kv else None
        self._rate_out: dict[str, float] | None = None
        self.taken = time.monotonic()
        self.others_waiting = False  # another gateway's waiter was seen at the last commit

    def again(self, deadline: float) -> _EtcdTurn:
        """The same hold for this gateway's next request on the key."""
        self._deadline, self._rate_out = deadline, None
        return self

    async def admit(self, api: Api, endpoint: str, post_data: str = "") -> bool:
        gov = self._owner.governor
        if api is Api.SPOT:
            cost, maximum, decay = spot_cost(endpoint), gov.spot_maximum, gov.spot_decay
        else:
            cost, maximum, decay = futures_cost(endpoint, post_data), FUTURES_BUDGET, \
                FUTURES_DECAY
        state = self._rate if isinstance(self._rate, dict) else {}
        bucket = Bucket(maximum, decay, float(state.get("level", 0.0)),
                        float(state.get("at", float("-inf"))))

        def admit() -> float:
            now = time.time()  # wall clock: the counter's time is shared between machines
            wait = bucket.admit(cost, now)
            if wait == 0:
                bucket.record(cost, now)
            return wait

        waited = await wait_for_rate(admit, self._deadline)
        self._rate_out = {"level": bucket.level, "at": bucket.at}
        return waited

    async def commit(self, nonce: int) -> None:
        if nonce <= self.last_nonce:  # the agent broke its promise: never send it
            raise CoordinationUnavailable("the agent's nonce is not above etcd's")
        puts = [{"request_put": {"key": b64(self._base + "nonce"), "value": b64(str(nonce))}}]
        if self._rate_out is not None:
            puts.append({"request_put": {"key": b64(self._base + "rate"),
                                         "value": b64(json.dumps(self._rate_out))}})
        txn = {
            "compare": [
                {"key": b64(self.waiter), "target": "CREATE", "result": "EQUAL",
                 "create_revision": self._revision},
                {"key": b64(self._base + "nonce"), "target": "MOD", "result": "EQUAL",
                 "mod_revision": self._nonce_rev}],
            "success": [*puts, {"request_range": {
                "key": b64(self._base + "lock/"), "range_end": _prefix_end(self._base + "lock/"),
                "count_only": True}}],
            "failure": [_range(self._base + "nonce"), _range(self.waiter)]}
        answer = await self._owner.call("kv/txn", txn)
        if answer.get("succeeded"):
            waiters = answer["responses"][-1].get("response_range", {}).get("count", "0")
            self._committed(nonce, str(answer["header"]["revision"]), int(waiters) > 1)
            return
        # A retry (the first try's answer was lost with its member) finds its own write.
        responses = answer.get("responses", [{}, {}])
        nonce_kvs, waiter_kvs = _kvs(responses[0]), _kvs(responses[1])
        if nonce_kvs and unb64(nonce_kvs[0]["value"]) == str(nonce) and waiter_kvs and \
                str(waiter_kvs[0].get("create_revision")) == self._revision:
            self._committed(nonce, str(nonce_kvs[0]["mod_revision"]), True)
            return
        raise CoordinationUnavailable("the key's lock or nonce changed hands")

    def _committed(self, nonce: int, revision: str, others_waiting: bool) -> None:
        self.last_nonce, self.nonce_floor, self._nonce_rev = nonce, nonce + 1, revision
        if self._rate_out is not None:
            self._rate = self._rate_out
        self.others_waiting = others_waiting


class EtcdCoordinator:
    """`Coordinator` over an etcd cluster (see the module's docstring)."""

    def __init__(self, settings: EtcdSettings, vault_path: Path, governor: Governor, *,
                 client: EtcdClient | None = None) -> None:
        self.settings, self.vault_path, self.governor = settings, vault_path, governor
        self.client = client or EtcdClient(settings)
        self.lease = _Lease(self.client, settings.lease_ttl)
        self._tokens = itertools.count()
        self._me = f"{os.getpid()}-{os.urandom(6).hex()}"
        self._keeper: asyncio.Task[None] | None = None
        self._held: dict[str, _EtcdTurn] = {}  # a lock kept for the next local request
        self._queued: dict[str, int] = {}  # requests waiting for the key's local order
        self._releasing: set[asyncio.Task[None]] = set()
        self._releasing_keys: set[str] = set()  # waiters whose deletion is under way

    def free(self, key_id: str) -> bool:  # noqa: ARG002 -- the Coordinator interface
        # Other gateways' requests are not seen here: always the two-step path.
        return False

    async def start(self) -> None:
        self._keeper = asyncio.get_running_loop().create_task(self.lease.keep_alive())
        try:
            await self.lease.get()  # reachable, and allowed in (TLS, user) - or say so now
        except EtcdUnavailable as exc:
            print(f"botvault: warning: {exc}; private requests are refused until it answers",
                  file=sys.stderr)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def stop(self) -> None:
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self.lease.revoke()
        await self.client.close()

    async def call(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.client.call(path, doc)
        except EtcdUnavailable as exc:
            raise CoordinationUnavailable(str(exc)) from None

    @contextlib.asynccontextmanager
    async def hold(self, key_id: str, deadline: float) -> AsyncIterator[Turn]:
        """The key's turn. The etcd lock is passed straight on to this gateway's next
        request on the key when one is queued here and the hold is younger than `_SLICE`
        (four times that while no other gateway's waiter was seen): under load one etcd
        write per request instead of three, and no gateway waits more than a slice."""
        base = self.settings.prefix + key_id + "/"
        order = KeyOrder.for_key_id(self.vault_path, key_id)
        self._queued[base] = self._queued.get(base, 0) + 1
        queued = True
        try:
            async with order.hold_async(timeout=max(0.001, deadline - time.monotonic())):
                self._queued[base] -= 1
                queued = False
                held = self._held.pop(base, None)
                turn = held.again(deadline) if held is not None else \
                    await self._acquire(base, deadline)
                keep = False
                try:
                    yield turn
                    # Others waiting: they get the key after at most a slice (fair turns).
                    keep = time.monotonic() - turn.taken < (
                        _SLICE if turn.others_waiting else 4 * _SLICE)
                finally:
                    if keep and self._queued.get(base, 0) > 0:
                        self._held[base] = turn
                    else:
                        # After the answer, off the bot's path: the bot is answered while
                        # the lock entry is deleted (a waiter here or elsewhere polls).
                        self._in_background(self._release(turn.waiter))
        except RequestLockTimeout:
            raise TurnTimeout from None
        finally:
            if queued:  # gave up waiting here: a lock kept for it must not stay held
                self._queued[base] -= 1
                if self._queued[base] == 0 and (kept := self._held.pop(base, None)):
                    await self._release(kept.waiter)

    async def _acquire(self, base: str, deadline: float) -> _EtcdTurn:
        try:
            lease = await self.lease.get()
        except EtcdUnavailable as exc:
            raise CoordinationUnavailable(str(exc)) from None
        waiter = f"{base}lock/{self._me}-{next(self._tokens)}"
        try:
            return await self._first_in_line(base, waiter, lease, deadline)
        except BaseException:
            # Whether or not it was written: delete it, without holding up the refusal.
            self._in_background(self._release(waiter))
            raise

    async def _first_in_line(self, base: str, waiter: str, lease: str, deadline: float
                             ) -> _EtcdTurn:
        """Put our waiter (idempotently), then wait until it is the oldest."""
        reads = [_range(base + "lock/", end=_prefix_end(base + "lock/"), first=True),
                 _range(base + "nonce"), _range(base + "rate"), _range(waiter)]
        # Our previous waiter on this key may still be on its way out (released in the
        # background): delete it here too, or we would queue behind ourselves.
        stale = [{"request_delete_range": {"key": b64(w)}}
                 for w in self._releasing_keys if w.startswith(base)]
        answer = await self.call("kv/txn", {
            "compare": [{"key": b64(waiter), "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": b64(waiter), "value": b64(self._me),
                                         "lease": lease}}, *stale, *reads],
            "failure": [*stale, *reads]})
        poll = _POLL_FIRST
        responses = answer["responses"][-len(reads):]
        while True:
            first = _kvs(responses[0])
            if first and unb64(first[0]["key"]) == waiter:
                nonce_kvs, rate_kvs = _kvs(responses[1]), _kvs(responses[2])
                return _EtcdTurn(self, base, waiter, str(first[0]["create_revision"]),
                                 nonce_kvs[0] if nonce_kvs else None,
                                 rate_kvs[0] if rate_kvs else None, deadline)
            if not _kvs(responses[3]):  # our waiter is gone: its lease expired
                raise CoordinationUnavailable("the lease was lost")
            if time.monotonic() + poll > deadline:
                raise TurnTimeout
            await asyncio.sleep(poll)
            poll = min(poll * 2, _POLL_MAX)
            responses = (await self.call("kv/txn", {"compare": [], "success": reads})
                         )["responses"]

    async def _release(self, waiter: str) -> None:
        self._releasing_keys.add(waiter)
        try:
            await self.client.call("kv/deleterange", {"key": b64(waiter)})
        except EtcdUnavailable:
            # It may still be there, ahead of everyone: let its lease expire.
            if self.lease.id is not None:
                self.lease.drop(self.lease.id)
        finally:
            self._releasing_keys.discard(waiter)

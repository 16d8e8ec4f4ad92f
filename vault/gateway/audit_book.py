"""The gateway's audit bookkeeping, beside its request handling (`app`).

A forwarded request's line is made durable before the request leaves (`sent`) and completed
when it returns (`account`: a `done` line with the same `seq`); a request that sent nothing
(refused, unauthenticated) is only counted, and the counts go out as `summary` lines once
per interval and reason, so no amount of them can push a forwarded request's line out
(`botvault.audit` keeps the lines; `audit_writer` writes them from a child process).
Also here: the pacing of refusals and the vault's change stamp, both cheap reads the
gateway takes per request.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .audit_writer import AuditFailed
from .routing import Route

__all__ = ["SUMMARY_SECONDS", "AuditBook", "Auditor", "Outcome", "RefusalPace"]

SUMMARY_SECONDS = 60.0  # refused and unauthenticated requests: one count per interval


class Auditor(Protocol):
    """Where audit records go (`audit_writer.AuditProcess`): `sent` returns once its record
    is durable (AuditFailed when it cannot be); `record` must not block."""

    async def start(self) -> None: ...

    async def sent(self, record: dict[str, Any]) -> None: ...

    def record(self, record: dict[str, Any]) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Outcome:
    """What the audit line says about one request."""

    route: Route | None
    started: float
    grant: str | None = None
    entry: str | None = None
    outcome: str = "forwarded"
    upstream_status: int | None = None
    seq: str | None = None  # set once its `sent` line is durable


class AuditBook:
    """One gateway's audit lines: `sent` before a request leaves, `account` after."""

    def __init__(self, audit: Auditor | None, *, refuse_on_failure: bool) -> None:
        self.audit = audit
        self._refuse = refuse_on_failure
        # Counted by (outcome, grant) for the next summary line.
        self._counts: collections.Counter[tuple[str, str | None]] = collections.Counter()
        self._run = os.urandom(4).hex()  # with a counter: each forwarded request's `seq`
        self._seq = 0
        self._summaries: asyncio.Task[None] | None = None
        self._warned = -math.inf

    async def start(self) -> None:
        if self.audit is not None:
            await self.audit.start()
            self._summaries = asyncio.ensure_future(self._summarize_every())

    async def stop(self) -> None:
        if self._summaries is not None:
            self._summaries.cancel()
        if self.audit is not None:
            self._summarize()
            await self.audit.stop()

    @staticmethod
    def _line(outcome: Outcome, method: str) -> dict[str, Any]:
        # Only these fields (botvault.audit.FIELDS): never a header, a body or a query string.
        return {
            "time": time.time(), "grant": outcome.grant, "entry": outcome.entry,
            "exchange": outcome.route.exchange if outcome.route else None,
            "method": method[:16],
            "endpoint": outcome.route.endpoint[:200] if outcome.route else None}

    async def sent(self, outcome: Outcome, method: str) -> bool:
        """The request's line, durable before it leaves. False: it could not be written
        and the request must not leave (--audit-failure refuse); said once per interval."""
        if self.audit is None:
            return True
        self._seq += 1
        seq = f"{self._run}-{self._seq}"
        try:
            await self.audit.sent({**self._line(outcome, method), "phase": "sent",
                                   "seq": seq})
        except AuditFailed as exc:
            if time.monotonic() - self._warned > SUMMARY_SECONDS:
                self._warned = time.monotonic()
                print(f"botvault: error: the audit line could not be written ({exc}); "
                      f"{'refusing to forward' if self._refuse else 'forwarding unaudited'}",
                      file=sys.stderr)
            return not self._refuse
        outcome.seq = seq
        return True

    def account(self, outcome: Outcome) -> None:
        """Complete a forwarded request's line, or count a request that sent nothing."""
        if self.audit is None:
            return
        if outcome.seq is None:
            self._counts[(outcome.outcome, outcome.grant)] += 1
            return
        self.audit.record({
            "time": time.time(), "phase": "done", "seq": outcome.seq,
            "outcome": outcome.outcome, "upstream_status": outcome.upstream_status,
            "duration_ms": round((time.monotonic() - outcome.started) * 1000, 3)})

    def _summarize(self) -> None:
        if self.audit is None:
            return
        counts, self._counts = self._counts, collections.Counter()
        for (what, grant), count in sorted(counts.items(), key=str):
            self.audit.record({"time": time.time(), "phase": "summary", "outcome": what,
                               "grant": grant, "count": count,
                               "interval_s": SUMMARY_SECONDS})

    async def _summarize_every(self) -> None:
        while True:
            await asyncio.sleep(SUMMARY_SECONDS)
            self._summarize()


class RefusalPace:
    """Refusals answered at once up to `rate` per second (a burst of `burst`); beyond that,
    each waits `delay` seconds before its answer. A bot that is refused now and then sees
    no difference; a flood (which waits for each answer on each of its connections, at
    most --max-connections) is slowed to connections/delay requests per second, so the
    bots with grants keep the event loop, the agent and the CPU."""

    def __init__(self, *, rate: float = 200.0, burst: float = 400.0, delay: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._burst, self._delay, self._clock = rate, burst, delay, clock
        self._tokens, self._at = burst, clock()

    async def refused(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return
        await asyncio.sleep(self._delay)

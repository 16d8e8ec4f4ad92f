"""What the vault keeps about nonce counters: where the state file lives, which counter an
entry's key uses, and each counter's high-water mark, sealed in its entry.

The state file is not encrypted and lives beside the vault, so it can be deleted, truncated
or put back from an older copy on its own. A counter that restarted below values it handed
out would repeat them, so the vault records the counter's durable mark in the entry (an
ordinary sealed field: every save, re-seal and backup carries it) and a counter standing
below its recorded mark is refused until `botvault nonce NAME --recover` sets it to at least
that mark and the clock plus a margin.

Marks are recorded at every save for the counters this process used, when the agent locks
(every counter), and right after an allocation that leaves a counter more than
MARK_AHEAD_S ahead of the clock once its distance ahead of the last record has doubled (so a
counter run ahead costs a logarithmic number of saves, not one per nonce). A counter that
follows the clock needs no more: the clock itself keeps it above what it handed out.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..entries import NS_PER_UNIT
from ..errors import FormatError, VaultError, VaultWarning
from ..exchanges.profiles import key_id
from .counters import (
    AHEAD_WARNING_S,
    DEFAULT_RECOVERY_MARGIN_S,
    NonceStore,
    duration,
)
from .state_map import peek_file

if TYPE_CHECKING:
    from ..entries import Entry

MARK_AHEAD_S = AHEAD_WARNING_S
_MARK_AHEAD_NS = int(MARK_AHEAD_S * 1e9)


def nonce_state_path(vault_path: Path) -> Path:
    return vault_path.with_name(vault_path.name + ".nonces")


def nonce_counter_id(entry: Entry) -> str:
    """Counters follow the exchange's key, not our name for it: a rename keeps the
    counter, and re-adding a removed key continues above its old nonces."""
    return key_id(entry.exchange, entry.api_key)


def recorded_mark(entry: Entry) -> int:
    """The mark the vault recorded for this entry's counter (0: none). A mark recorded for
    another key (the entry was rotated since) does not count."""
    mark = entry.nonce_mark
    return mark[1] if mark is not None and mark[0] == nonce_counter_id(entry) else 0


def with_mark(entry: Entry, mark: int) -> Entry:
    return entry.with_changes(nonce_mark=(nonce_counter_id(entry), mark))


def recover_hint(name: str) -> str:
    return (f"run: botvault nonce {name} --recover (it keeps what still verifies and sets "
            "this key's counter to at least the mark the vault recorded and the clock plus "
            "a margin, and says so)")


class VaultCounters:
    """The nonce counters of one open vault: its NonceStore, checked against the marks the
    vault recorded. `record(marks)` saves {entry name: mark} into the vault."""

    def __init__(self, vault_path: Path, record: Callable[[dict[str, int]], None]) -> None:
        self.path = nonce_state_path(vault_path)
        self._record = record
        self._store: NonceStore | None = None
        self._checked: set[str] = set()  # counters checked against their mark in this store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        self._checked.clear()

    def store(self, name: str) -> NonceStore:
        if self._store is None:
            try:
                self._store = NonceStore(self.path)
            except FormatError as exc:
                raise _refused(exc, name) from None
        return self._store

    # -- handing out -------------------------------------------------------------------------

    def allocate(self, entry: Entry, count: int) -> range:
        counter, store = nonce_counter_id(entry), self._store or self.store(entry.name)
        try:
            if counter not in self._checked:
                self._check(store, entry, counter)
            values = store.allocate(counter, entry.nonce_unit, count)
        except FormatError as exc:
            raise _refused(exc, entry.name) from None
        end, ns = values[-1], NS_PER_UNIT[entry.nonce_unit]
        if end - time.time_ns() // ns > _MARK_AHEAD_NS // ns:  # _after's first test, inlined
            self._after(store, entry, counter, end)
        return values

    def next(self, entry: Entry, at_least: int | None = None) -> int:
        counter, store = nonce_counter_id(entry), self.store(entry.name)
        try:
            if counter not in self._checked:
                self._check(store, entry, counter)
            if at_least is not None:  # another machine's gateway went up to at_least - 1
                store.raise_to(counter, entry.nonce_unit, at_least - 1)
            value = store.next(counter, entry.nonce_unit)
        except FormatError as exc:
            raise _refused(exc, entry.name) from None
        self._after(store, entry, counter, value)
        return value

    def peek(self, entry: Entry) -> tuple[int | None, float]:
        """(last value handed out or None, seconds ahead of the clock); reads only, so it
        works on a read-only file system, unless this vault has the store open already."""
        counter = nonce_counter_id(entry)
        try:
            if self._store is not None:
                last, mark = self._store.peek(counter), self._store.durable_mark(counter)
                found = None if last is None or mark is None else (last, mark)
            else:
                found = peek_file(self.path, counter)
        except FormatError as exc:
            raise _refused(exc, entry.name) from None
        self._compare(entry, None if found is None else found[1])
        if found is None:
            return None, 0.0
        ns = NS_PER_UNIT[entry.nonce_unit]
        return found[0], (found[0] * ns - time.time_ns()) / 1e9

    # -- the marks ---------------------------------------------------------------------------

    def _check(self, store: NonceStore, entry: Entry, counter: str) -> None:
        if recorded_mark(entry):
            self._compare(entry, store.durable_mark(counter))
        self._checked.add(counter)

    def _compare(self, entry: Entry, have: int | None) -> None:
        want = recorded_mark(entry)
        if want and (have is None or have < want):
            state = "does not hold it" if have is None else f"has it at {have}"
            raise FormatError(
                f"the nonce state file {self.path} is behind the vault for {entry.name!r}: "
                f"the vault recorded this key's counter at {want}, the file {state} "
                "(deleted, truncated or put back from an older copy); going on could repeat "
                "nonces already handed out", hint=recover_hint(entry.name))

    def _after(self, store: NonceStore, entry: Entry, counter: str, end: int) -> None:
        """Record the mark when the counter stands well ahead of the clock (see above)."""
        ns = NS_PER_UNIT[entry.nonce_unit]
        now, ahead = time.time_ns() // ns, _MARK_AHEAD_NS // ns
        if end - now <= ahead:
            return
        mark_ = entry.nonce_mark  # recorded_mark(entry), without hashing the key again
        recorded = mark_[1] if mark_ is not None and mark_[0] == counter else 0
        if end <= recorded + max(recorded - now, ahead):
            return
        mark = store.durable_mark(counter)
        if mark is not None:
            try:
                self._record({entry.name: mark})
            except (VaultError, OSError) as exc:
                # The values are sound (the state file holds them); only the check that
                # would notice a lost state file later is weaker. Say so, hand them out.
                warnings.warn(f"could not record the nonce mark of {entry.name!r} in the "
                              f"vault ({exc}); it is recorded at the next save",
                              VaultWarning, stacklevel=4)

    def marks(self, entries: Iterable[Entry], *, every: bool = False) -> dict[str, int]:
        """{name: mark} for the entries whose counter stands above its recorded mark: the
        counters this process used, or (`every`) every counter the file holds."""
        if self._store is None and not (every and self.path.exists()):
            return {}
        found: dict[str, int] = {}
        try:
            store = self.store("")
            for entry in entries:
                counter = nonce_counter_id(entry)
                if not every and counter not in self._checked:
                    continue
                mark = store.durable_mark(counter)
                if mark is not None and mark > recorded_mark(entry):
                    found[entry.name] = mark
        except FormatError:
            return {}  # a refused file vouches for nothing: the recorded marks stay
        return found

    # -- recovery ----------------------------------------------------------------------------

    def recover(self, entry: Entry, margin_s: float = DEFAULT_RECOVERY_MARGIN_S) -> list[str]:
        """Repair the state file and set this entry's counter to at least its recorded mark
        and the clock plus `margin_s`; returns what was found and done, in words."""
        self.close()
        findings = NonceStore.recover(self.path, margin_s=margin_s)
        store = self.store(entry.name)
        counter, unit = nonce_counter_id(entry), entry.nonce_unit
        ns = NS_PER_UNIT[unit]
        recorded = recorded_mark(entry)
        clock_plus = (time.time_ns() + int(margin_s * 1e9)) // ns
        before = store.peek(counter)
        last = store.raise_to(counter, unit, max(recorded, clock_plus))
        self._checked.add(counter)
        mark = store.durable_mark(counter)
        if mark is not None and mark > recorded:
            self._record({entry.name: mark})
        ahead = (last * ns - time.time_ns()) / 1e9
        basis = (f"the vault's recorded mark {recorded}" if recorded
                 else "no mark recorded in the vault")
        if before is not None and before >= last:
            done = f"stands at {last} ({unit}), already at or above"
        else:
            done = f"set to {last} ({unit}), at least"
        return [*findings,
                f"{entry.name}: nonce counter {done} {basis} and the clock plus {margin_s:g} s; "
                f"it stands {duration(max(ahead, 0.0))} ahead of the clock, so the exchange "
                "rejects clock-based nonces on this key until the clock catches up"]


def _refused(exc: FormatError, name: str) -> FormatError:
    """The store's refusal, with the command that repairs it for this entry (a file of a
    newer botvault keeps its own hint: recovery does not rewrite it)."""
    repairable = exc.hint is not None and "NonceStore.recover" in exc.hint
    return FormatError(exc.message, hint=recover_hint(name) if repairable else exc.hint)

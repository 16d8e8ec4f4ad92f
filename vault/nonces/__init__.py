"""Machine-local, crash-safe, strictly increasing API nonces, one counter per API key.

Every process of the machine shares one small state file beside the vault (not secret, not
encrypted). A nonce is `max(last + 1, now in the unit)`, decided under an exclusive `flock`
on the state file (and a thread lock), so values are unique and linearizable across
processes and threads. Counters are never deleted.

Crash safety without an fsync per nonce: `last` lives in a shared memory map of the file,
which survives SIGKILL (the kernel keeps the page) and carries a checksum, checked at every
nonce. Each counter also has a high-water mark, and a value is handed out only if it is at
or below a mark that is already durable. Marks are raised in blocks (`reserve` nanoseconds
of clock ahead, plus a bounded burst while allocations outpace the clock), so a busy counter
syncs every couple of seconds, not per nonce. After a reboot (the boot id changed) `last`
is not trusted and every counter resumes from its durable mark; the bounded burst is the
most a reboot moves a counter ahead.

The state file can be lost or put back on its own; `marks` has the vault keep each
counter's mark in its encrypted entry and refuse a state file that stands below it.

What makes "durable" hold against power loss on real disks (garbled sectors, page
write-back at any time, processes dying between a write and its sync) is in `layout` (the
file format and the write protocol) and `recovery`: two checksummed copies of each mark in
different pages, never written in the same sync; a sync before every write, so nothing a
dead process left pending rides along; a record count that vouches for every record
handing out values; and a repair pass at the first open after a reboot. A file that still
does not add up is refused (`FormatError`) and `NonceStore.recover` restarts the lost
counters above anything plausible.

Units: `ms` (ccxt, krakenex), `us`, `10ns` (python-kraken-sdk). A value handed out more than
10 s ahead of the clock triggers one `NonceAheadWarning` per process and counter: clients
making clock nonces on the same key would be rejected by the exchange.

The package, one concern per module:

    store     NonceStore (the counters of one file, the hot path), NonceAheadWarning, the
              nonce units and the checks on units, counts and counter ids
    layout    the state file: header, chunks, slots, checksums, validation
    files     opening and creating the state file safely; the default sync (fsync,
              F_FULLFSYNC) and boot id
    recovery  settling after a reboot; rebuilding a refused file (NonceStore.recover)
    marks     for the vault: nonce_state_path, nonce_counter_id, and the high-water marks
              the vault keeps of each counter
"""

from __future__ import annotations

from ..exchanges.profiles import key_id
from .counters import (
    AHEAD_WARNING_S,
    DEFAULT_RECOVERY_MARGIN_S,
    DEFAULT_RESERVE_NS,
    MAX_COUNT,
    UNIT_CHANGE_TOLERANCE_S,
    UNITS,
    NonceAheadWarning,
    NonceStore,
)
from .files import default_boot_id, default_sync
from .marks import nonce_counter_id, nonce_state_path

__all__ = [
    "AHEAD_WARNING_S",
    "DEFAULT_RECOVERY_MARGIN_S",
    "DEFAULT_RESERVE_NS",
    "MAX_COUNT",
    "UNITS",
    "UNIT_CHANGE_TOLERANCE_S",
    "NonceAheadWarning",
    "NonceStore",
    "default_boot_id",
    "default_sync",
    "key_id",
    "nonce_counter_id",
    "nonce_state_path",
]

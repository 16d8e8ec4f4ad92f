"""One agent round trip instead of two, for a request whose key's turn is free.

The gateway's two steps (`grant_verify` without the key's order, then `grant_sign` holding
it) exist so that requests which will be refused never queue behind, or ahead of, a key's
good ones (issue 17). When nobody of this gateway holds or waits for the key's turn, there
is nobody to queue ahead of: the request takes the turn at once and the agent checks and
signs in one call (`grant_sign` without a ticket does every check of `grant_verify`, the
gateway's replay window and exchange included). A request that arrives meanwhile finds
the turn taken and goes the two-step way, so a flood that wins a free turn delays a good
request by at most the one call in progress.

Only grants seen by a `grant_verify` since the vault file last changed, without a trading
policy (whose pair aliases the gateway must look up before the agent judges the order),
take the one step; a vault saved since (a grant changed, a policy added) sends the next
request through the two steps again. Nothing here authorises anything: the agent checks
every request either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .grants import Verified

__all__ = ["Known", "OneStep", "vault_stamp"]

_REMEMBERED = 4096  # grants kept (bounded: api keys are the bots' to make up)


def vault_stamp(path: Path) -> tuple[int, ...] | None:
    """What changes whenever the vault at `path` is saved (it is replaced), read with one
    stat and without the agent; None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class Known:
    """A grant the agent verified, and the vault file as it was then."""

    key_id: str
    grant: str
    entry: str
    stamp: tuple[int, ...]


class OneStep:
    """Which grants may take the one step (see the module docstring)."""

    def __init__(self, vault_path: Path) -> None:
        self._path = vault_path
        self._known: dict[str, Known] = {}

    def stamp(self) -> tuple[int, ...] | None:
        return vault_stamp(self._path)

    def candidate(self, grant_key: str) -> Known | None:
        known = self._known.get(grant_key)
        if known is not None and self.stamp() != known.stamp:
            del self._known[grant_key]
            return None
        return known

    def remember(self, grant_key: str, verified: Verified, stamp: tuple[int, ...] | None
                 ) -> None:
        """After a `grant_verify` that held; `stamp` was taken before it was asked."""
        if verified.policy or stamp is None:
            self._known.pop(grant_key, None)
            return
        if len(self._known) >= _REMEMBERED and grant_key not in self._known:
            self._known.clear()
        self._known[grant_key] = Known(verified.key_id, verified.grant, verified.entry, stamp)

    def forget(self, grant_key: str) -> None:
        self._known.pop(grant_key, None)

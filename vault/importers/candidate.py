"""`Candidate`, a key pair as an importer found it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..secret import Secret


@dataclass(frozen=True)
class Candidate:
    """One key pair found in a file. `source` is "path:line"; `notes` are things the user
    should hear about (a duplicate variable, ``${...}`` taken literally), never values."""

    name: str | None
    exchange: str | None
    api_key: str
    api_secret: Secret = field(repr=False)
    source: str
    notes: tuple[str, ...] = ()

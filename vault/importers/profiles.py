"""Naming what an importer found: exchange ids to botvault profiles, and entry names."""

from __future__ import annotations

from ..entries import NAME_RE
from ..exchanges.profiles import CCXT_IDS, GENERIC


def profile_for(exchange_id: str) -> str:
    return CCXT_IDS.get(exchange_id.strip().lower(), GENERIC)


def suggested_name(value: object) -> str | None:
    """A suggested entry name, only when it is already a valid one."""
    return value if isinstance(value, str) and NAME_RE.fullmatch(value) else None

"""Where a vault's nonce state file lives, and which counter an entry's API key uses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..entries import Entry


def nonce_state_path(vault_path: Path) -> Path:
    return vault_path.with_name(vault_path.name + ".nonces")


def nonce_counter_id(entry: Entry) -> str:
    """Counters follow the exchange's key, not our name for it: a rename keeps the
    counter, and re-adding a removed key continues above its old nonces."""
    return key_id(entry.exchange, entry.api_key)


def key_id(exchange: str, api_key: str) -> str:
    """The one identity of a real exchange key: its nonce counter and its request lock
    (botvault.request_lock) are both keyed by it, so they can never disagree."""
    import hashlib

    material = f"{exchange}\0{api_key}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(material, digest_size=16, person=b"botvault-nonce").hexdigest()

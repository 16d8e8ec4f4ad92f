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
    import hashlib

    material = f"{entry.exchange}\0{entry.api_key}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(material, digest_size=16, person=b"botvault-nonce").hexdigest()

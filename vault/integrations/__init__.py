"""Drop-in pieces for popular Kraken clients: nonces from the vault's counter.

Both helpers take a `nonce` source, a callable returning the next nonce for one key: from an
open vault (`nonce_source(vault, name)`) or from the agent
(`lambda: client.next_nonce(name)`). The clients are imported only by the submodules, and
only when used (`pip install botvault[integrations]`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..open_vault import Vault

__all__ = ["NonceSource", "nonce_source"]

NonceSource = Callable[[], int]


def nonce_source(vault: Vault, name: str) -> NonceSource:
    """The vault counter of entry `name`, as a zero-argument callable."""
    vault.get(name)  # fail now, not at the first request, when the name is wrong
    return lambda: vault.next_nonce(name)

"""python-kraken-sdk: client classes whose `get_nonce()` returns the vault's counter.

    from kraken.spot import User
    client = with_vault_nonces(User, nonce_source(vault, "spot-bot"))(key=..., secret=...)

or, all in one: `spot_client(vault, "spot-bot", User)`. The SDK makes nonces in units of
10 ns; give the entry `--nonce-unit 10ns` if other SDK clients use the same key with their
own clock nonces, or any unit when every client of the key goes through the vault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from . import NonceSource, nonce_source

if TYPE_CHECKING:
    from ..open_vault import Vault

__all__ = ["spot_client", "with_vault_nonces"]


C = TypeVar("C", bound=type[Any])


def with_vault_nonces(client_cls: C, nonce: NonceSource) -> C:
    """A subclass of an SDK client class (Spot or Futures) that asks `nonce` for nonces."""

    def get_nonce(_self: Any) -> str:
        return str(nonce())

    subclass: C = type(f"Vault{client_cls.__name__}", (client_cls,),  # type: ignore[assignment] # a subclass of C is a C
                       {"get_nonce": get_nonce})
    return subclass


def spot_client(vault: Vault, name: str, client_cls: C, **kwargs: Any) -> Any:
    """An SDK client for entry `name` with its key, secret and the vault's nonces."""
    entry = vault.get(name)
    cls = with_vault_nonces(client_cls, nonce_source(vault, name))
    return cls(key=entry.api_key, secret=entry.api_secret.reveal(), **kwargs)

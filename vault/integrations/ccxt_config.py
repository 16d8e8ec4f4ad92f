"""ccxt: an exchange config whose nonces come from the vault's counter.

ccxt accepts any attribute in the config dict and sets it on the exchange, so a `nonce`
callable replaces `Exchange.nonce()`. `ccxt.kraken` signs with
`incrementing_nonce()`, which calls it; `ccxt.krakenfutures` sends no nonce at all, so the
counter is not consulted there (nothing to collide).

    exchange = ccxt.kraken(ccxt_config(vault, "spot-bot"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import NonceSource, nonce_source

if TYPE_CHECKING:
    from ..core import Vault

__all__ = ["ccxt_config"]


def ccxt_config(vault: Vault, name: str, *, nonce: NonceSource | None = None,
                **extra: Any) -> dict[str, Any]:
    """`{"apiKey", "secret", "nonce", **extra}` for `ccxt.kraken(...)` / `ccxt.krakenfutures`.

    The dict holds the secret in plain text, as ccxt needs it: build it right where the
    exchange is constructed and do not log it. To keep the secret out of the bot entirely,
    sign through the agent instead.
    """
    entry = vault.get(name)
    return {"apiKey": entry.api_key, "secret": entry.api_secret.reveal(),
            "nonce": nonce or nonce_source(vault, name), **extra}

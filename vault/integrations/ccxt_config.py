"""ccxt: an exchange config whose nonces come from the vault's counter.

ccxt accepts any attribute in the config dict and sets it on the exchange, so a `nonce`
callable replaces `Exchange.nonce()`. `ccxt.kraken` signs with
`incrementing_nonce()`, which calls it; `ccxt.krakenfutures` sends no nonce at all, so the
counter is not consulted there (nothing to collide).

    exchange = ccxt.kraken(ccxt_config(vault, "spot-bot"))            # an open Vault
    exchange = ccxt.kraken(ccxt_agent_config(agent.connect(), "spot-bot"))  # the agent

Both give increasing nonces, not send order: two processes may still send theirs in the
opposite order and Kraken (no nonce window) rejects the later-sent, lower one. Bots that
share a key across processes use `agent_signed.ccxt_exchange`, which holds the order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import NonceSource, nonce_source

if TYPE_CHECKING:
    from ..agent import AgentClient
    from ..core import Vault

__all__ = ["ccxt_agent_config", "ccxt_config"]


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


def ccxt_agent_config(client: AgentClient, name: str, **extra: Any) -> dict[str, Any]:
    """The same config from the agent: no passphrase in the bot, nonces from the agent.

    The secret is handed over (ccxt signs with it); the agent's scope checks and the
    request order across processes do not apply to a client that signs itself. To keep the
    secret in the agent and the order held, use `agent_signed.ccxt_exchange` instead.
    """
    credentials = client.credentials(name)
    return {"apiKey": credentials.api_key, "secret": credentials.api_secret.reveal(),
            "nonce": lambda: client.next_nonce(name), **extra}

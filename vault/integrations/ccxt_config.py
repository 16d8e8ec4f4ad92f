"""ccxt: an exchange config whose nonces come from the vault's counter.

ccxt accepts any attribute in the config dict and sets it on the exchange, so a `nonce`
callable replaces `Exchange.nonce()`. `ccxt.kraken` signs with
`incrementing_nonce()`, which calls it; `ccxt.krakenfutures` sends no nonce at all, so the
counter is not consulted there (nothing to collide).

    exchange = ccxt.kraken(ccxt_config(vault, "spot-bot"))            # an open Vault
    exchange = ccxt.kraken(ccxt_agent_config(agent.connect(), "spot-bot"))  # the agent

The first gives increasing nonces, not send order: two processes may still send theirs in
the opposite order and Kraken (no nonce window) rejects the later-sent, lower one. The second
holds no secret and no passphrase and keeps the order (the agent signs at the wire, see
`ccxt_session`), as `agent_signed.ccxt_exchange` does for a class instead of a config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..request_lock import DEFAULT_TIMEOUT
from . import NonceSource, nonce_source

if TYPE_CHECKING:
    from ..agent import AgentClient
    from ..open_vault import Vault

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


def ccxt_agent_config(client: AgentClient, name: str, *,
                      order_timeout: float = DEFAULT_TIMEOUT,
                      grant: tuple[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A config for a *synchronous* `ccxt.kraken(...)` / `ccxt.krakenfutures(...)` that
    holds neither the secret nor the passphrase: the public api key, a placeholder secret,
    and a `session` (`ccxt_session.AgentSigningSession`) that has the agent sign every
    private request at the wire, holding the key's request order from signing until the
    response. For `ccxt.async_support`, use `agent_signed.ccxt_exchange`.

    The entry must be a Kraken Spot or Futures key; which ccxt class it fits is checked when
    the first private request goes out (the agent refuses a path of the other product).
    `grant` (the pair `botvault grant add` printed) is needed with a `--sign-only` agent.
    """
    from .agent_entry import GrantPair, resolve
    from .ccxt_session import PLACEHOLDER_SECRET, AgentSigningSession

    pair = None if grant is None else GrantPair.of(grant)
    if pair is not None:
        expected = client.grant_resolve(pair.api_key).exchange
    else:
        listed = next((e for e in client.list() if e.get("name") == name), {})
        expected = str(listed.get("exchange", "kraken-spot"))
    if expected not in ("kraken-spot", "kraken-futures"):
        expected = "kraken-spot"  # resolve() refuses it with the right message
    entry = resolve(client, name, expected, "a ccxt Kraken config", order_timeout, pair)
    return {"apiKey": entry.api_key, "secret": PLACEHOLDER_SECRET,
            "session": AgentSigningSession(entry), **extra}

"""Existing Kraken clients that sign through the agent: the secret never enters the bot,
and one key's requests go out one at a time, in nonce order, across every process.

    from botvault import agent
    from botvault.integrations.agent_signed import ccxt_exchange, kraken_sdk_client, krakenex_api

    client = agent.connect()
    exchange = ccxt_exchange(ccxt.kraken, "spot-bot", client)        # ccxt (or async_support)
    user = kraken_sdk_client(kraken.spot.User, "spot-bot", client)    # python-kraken-sdk
    api = krakenex_api("spot-bot", client)                            # krakenex

Each helper subclasses the client and changes two things: the signing step (the client
builds the request as usual, without a secret, and the agent inserts its nonce (Spot),
checks the key's scope and returns the headers), and the request path (ccxt's `fetch2`, the
SDK's `request`, krakenex's `query_private`), which holds the key's `KeyOrder` from taking the
nonce until the response has arrived. Kraken accepts only increasing nonces (no window), so
nonces that are sent out of order would be rejected; held this way, none is. The hold is
released on every error, timeout and cancellation; waiting for it longer than `order_timeout`
seconds (default 30) fails the call. The client object holds the public api key and a
connection to the agent, nothing else.

The entry must suit the client: a Spot entry for ccxt.kraken, kraken.spot and krakenex, a
Futures entry for ccxt.krakenfutures and kraken.futures; anything else is refused before
any request. Spot requests with JSON bodies (ccxt's CancelOrderBatch, AddOrderBatch, percent
triggers; the SDK's `do_json`) are refused: the agent signs URL-encoded bodies only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, VaultError
from ..request_lock import DEFAULT_TIMEOUT
from ..secret import Secret
from . import ccxt_agent, krakenex_agent, sdk_agent
from .agent_entry import GrantPair, resolve
from .client_errors import as_ccxt_error

if TYPE_CHECKING:
    from ..agent import AgentClient

__all__ = ["ccxt_exchange", "kraken_sdk_client", "krakenex_api"]


def ccxt_exchange(exchange_cls: type[Any], name: str, client: AgentClient, *,
                  order_timeout: float = DEFAULT_TIMEOUT, grant: GrantInput | None = None,
                  **config: Any) -> Any:
    """A `ccxt.kraken` or `ccxt.krakenfutures` (sync or `ccxt.async_support`) whose private
    requests the agent signs, in order; `config` is ccxt's constructor config. `grant`
    (the pair `botvault grant add` printed) is needed with a `--sign-only` agent."""
    exchange_id = _ccxt_id(exchange_cls)
    expected = ccxt_agent.EXCHANGES.get(str(exchange_id))
    try:
        if "secret" in config or "apiKey" in config:
            raise InvalidInputError(
                "the key comes from the entry and the secret stays in the agent",
                hint="leave apiKey and secret out of the config")
        if expected is None:
            raise InvalidInputError(
                f"{getattr(exchange_cls, '__name__', exchange_cls)!r} is not a Kraken exchange "
                f"class; the agent signs for "
                f"ccxt.kraken and ccxt.krakenfutures only")
        entry = resolve(client, name, expected, f"ccxt.{exchange_id}", order_timeout,
                        _grant(grant))
    except VaultError as exc:
        raise as_ccxt_error(exc) from exc
    cls = ccxt_agent.agent_signed_class(exchange_cls, entry)
    return cls({**config, "apiKey": entry.api_key})


# A grant as `botvault grant add` printed it: (api key, api secret).
GrantInput = tuple[str, "str | Secret"]


def _grant(grant: GrantInput | None) -> GrantPair | None:
    return None if grant is None else GrantPair.of(grant)


def _ccxt_id(exchange_cls: type[Any]) -> str:
    """The ccxt id, before anything is built: ccxt sets `id` from `describe()` in its
    constructor (the class attribute is a placeholder), and `describe()` reads nothing."""
    describe = getattr(exchange_cls, "describe", None)
    if not isinstance(exchange_cls, type) or describe is None:
        return ""
    return str(describe(object.__new__(exchange_cls)).get("id", ""))


def kraken_sdk_client(client_cls: type[Any], name: str, client: AgentClient, *,
                      order_timeout: float = DEFAULT_TIMEOUT, grant: GrantInput | None = None,
                      **kwargs: Any) -> Any:
    """A python-kraken-sdk Spot or Futures client (REST sync or async, or websocket) whose
    private requests the agent signs, in order; `kwargs` go to the SDK's constructor.
    `grant` is needed with a `--sign-only` agent (REST clients; the Futures websocket
    challenge is signed by entry name, which a sign-only agent refuses)."""
    if "secret" in kwargs or "key" in kwargs:
        raise InvalidInputError("the key comes from the entry and the secret stays in the agent",
                                hint="leave key= and secret= out")
    entry = resolve(client, name, sdk_agent.product_of(client_cls),
                    f"{client_cls.__module__}.{client_cls.__name__}", order_timeout,
                    _grant(grant))
    cls = sdk_agent.agent_signed_class(client_cls, entry)
    return cls(key=entry.api_key, secret=sdk_agent.SECRET_PLACEHOLDER, **kwargs)


def krakenex_api(name: str, client: AgentClient, *, order_timeout: float = DEFAULT_TIMEOUT,
                 grant: GrantInput | None = None, **kwargs: Any) -> Any:
    """A `krakenex.API` whose private queries the agent signs, in order; `kwargs` go to
    `krakenex.API` (e.g. `conn=`). `grant` is needed with a `--sign-only` agent."""
    import krakenex

    if "secret" in kwargs or "key" in kwargs:
        raise InvalidInputError("the key comes from the entry and the secret stays in the agent",
                                hint="leave key= and secret= out")
    entry = resolve(client, name, "kraken-spot", "krakenex", order_timeout, _grant(grant))
    cls = krakenex_agent.agent_signed_class(krakenex.API, entry)
    return cls(key=entry.api_key, **kwargs)

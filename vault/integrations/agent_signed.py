"""Existing Kraken clients that sign through the agent: the secret never enters the bot.

    from botvault import agent
    from botvault.integrations.agent_signed import ccxt_exchange, kraken_sdk_client

    client = agent.connect()
    exchange = ccxt_exchange(ccxt.kraken, "spot-bot", client)        # ccxt
    user = kraken_sdk_client(kraken.spot.User, "spot-bot", client)    # python-kraken-sdk

Each helper subclasses the client and replaces only its signing step: the client builds
the request as usual, without a secret, and the agent inserts its nonce (Spot), checks the
key's scope and returns the headers. The client object holds the public api key and a
connection to the agent, nothing else. Spot requests with JSON bodies (ccxt's
CancelOrderBatch, AddOrderBatch, percent triggers; the SDK's `do_json`) are refused: the
agent signs URL-encoded bodies only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urlsplit

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..agent import AgentClient

__all__ = ["ccxt_exchange", "kraken_sdk_client"]

C = TypeVar("C", bound=type[Any])
_FORM = "application/x-www-form-urlencoded"


def _subclass(base: C, methods: dict[str, Any]) -> C:
    made: C = type(f"AgentSigned{base.__name__}", (base,), methods)  # type: ignore[assignment] # a subclass of C is a C
    return made


def _public_key(client: AgentClient, name: str) -> str:
    """The entry's api key from the agent's listing: `credentials()` would bring the
    secret into this process, which is what signing through the agent avoids."""
    from ..errors import NotFoundError

    for entry in client.list():
        if entry.get("name") == name:
            return str(entry["api_key"])
    raise NotFoundError(f"no entry named {name!r}", hint="see the names with: botvault list")


# -- ccxt ----------------------------------------------------------------------------------


def ccxt_exchange(exchange_cls: C, name: str, client: AgentClient, **config: Any) -> Any:
    """A `ccxt.kraken` or `ccxt.krakenfutures` whose private requests the agent signs."""
    cls = _subclass(exchange_cls, {"sign": _ccxt_sign, "check_required_credentials":
                                   _ccxt_check_key_only})
    exchange = cls({"apiKey": _public_key(client, name), **config})
    exchange.botvault_agent, exchange.botvault_entry = client, name
    return exchange


def _ccxt_check_key_only(self: Any, error: bool = True) -> bool:
    """ccxt requires a secret before signing; here the agent holds it."""
    if not self.apiKey and error:
        raise InvalidInputError("the exchange has no api key")
    return bool(self.apiKey)


def _ccxt_sign(self: Any, path: str, api: Any = "public", method: str = "GET",
               params: Any = None) -> dict[str, Any]:
    """ccxt's own request building, with the agent's signature in place of its HMAC."""
    base: Any = type(self).__mro__[1]
    secret, self.secret = getattr(self, "secret", ""), ""
    try:  # run with an empty HMAC key: its signature is replaced below
        request: dict[str, Any] = base.sign(self, path, api, method, params or {})
    finally:
        self.secret = secret
    api_name = api[0] if isinstance(api, list) else api
    if request.get("headers") is None or api_name == "public":
        return request
    url = urlsplit(request["url"])
    if self.id == "kraken":
        signed = self.botvault_agent.sign(self.botvault_entry, url.path, request["body"] or "")
        request["body"] = signed.body
    else:  # krakenfutures: the query string (or batchorder's body) is what is signed
        data = request["body"] if request["body"] is not None else url.query
        signed = self.botvault_agent.sign(self.botvault_entry, url.path, data, method=method)
    request["headers"] = {"Content-Type": _FORM, "Accept": "application/json",
                          **signed.headers}
    return request


# -- python-kraken-sdk ----------------------------------------------------------------------


def kraken_sdk_client(client_cls: C, name: str, client: AgentClient, **kwargs: Any) -> Any:
    """A python-kraken-sdk Spot or Futures client whose private requests the agent signs."""
    from kraken.base_api import FuturesClient, SpotClient

    method: Any
    if issubclass(client_cls, SpotClient):
        method = _sdk_spot_prepare
    elif issubclass(client_cls, FuturesClient):
        method = _sdk_futures_prepare
    else:
        raise InvalidInputError(f"{client_cls.__name__} is not a python-kraken-sdk client")
    made = _subclass(client_cls, {"_prepare_request": method})(
        key=_public_key(client, name), secret="", **kwargs)
    made.botvault_agent, made.botvault_entry = client, name
    return made


def _sdk_spot_prepare(self: Any, *, method: str, uri: str, params: dict[str, Any] | None = None,
                      auth: bool = True, do_json: bool = False, query_str: str | None = None,
                      extra_params: str | dict[str, Any] | None = None) -> tuple[Any, ...]:
    base: Any = type(self).__mro__[1]
    verb, url, headers, fields, query = base._prepare_request(
        self, method=method, uri=uri, params=params, auth=False, do_json=do_json,
        query_str=query_str, extra_params=extra_params)
    if not auth:
        return verb, url, headers, fields, query
    if do_json:
        raise InvalidInputError("the agent signs URL-encoded Kraken Spot bodies, not JSON")
    signed = self.botvault_agent.sign(self.botvault_entry, uri,
                                      urlencode(fields, doseq=True))
    # The SDK posts `data=fields`; a str is sent as is, so the signed bytes go out.
    return verb, url, {"Content-Type": f"{_FORM}; charset=utf-8", **signed.headers}, \
        signed.body, query


def _sdk_futures_prepare(self: Any, *, method: str, uri: str,
                         post_params: dict[str, Any] | None = None,
                         query_params: dict[str, Any] | None = None, auth: bool = True,
                         extra_params: str | dict[str, Any] | None = None) -> tuple[Any, ...]:
    base: Any = type(self).__mro__[1]
    verb, url, headers, payload, query = base._prepare_request(
        self, method=method, uri=uri, post_params=post_params, query_params=query_params,
        auth=False, extra_params=extra_params)
    if not auth:
        return verb, url, headers, payload, query
    signed = self.botvault_agent.sign(self.botvault_entry, uri, query + payload, method=verb)
    return verb, url, {"Content-Type": f"{_FORM}; charset=utf-8", **signed.headers}, \
        payload, query

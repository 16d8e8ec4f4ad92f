"""python-kraken-sdk clients (Spot and Futures, sync, async and websocket) whose private
requests the agent signs and whose requests on one key go out one at a time, in nonce order.

The SDK's request path is `request` (a coroutine in the async clients): `_prepare_request`
makes the nonce and headers, then the session sends and the answer is checked. The subclass
holds the key's `KeyOrder` around the whole of an authenticated `request`, released however it
ends, and its `_prepare_request` lets the SDK build the request unsigned and adds the agent's
signature. The websocket clients come along: the Spot one fetches its token through `request`
(GetWebSocketsToken, signed by the agent), the Futures one has its challenge signed by the
agent (`get_sign_challenge`).

The SDK is given the public api key and a placeholder for the secret, because it treats a
client without both as unauthenticated (websockets included); the placeholder never signs
anything (the HMAC methods are replaced by ones that refuse). `_prepare_request` is private
to the SDK, hence the pin `python-kraken-sdk>=3.5.1,<3.6`.
"""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import urlencode

from ..errors import InvalidInputError, VaultError
from ..exchanges.kraken import futures_post_data
from .agent_entry import AgentEntry
from .client_errors import as_sdk_error

__all__ = ["SECRET_PLACEHOLDER", "agent_signed_class", "product_of"]

# Not a secret: marks a client whose secret is in the agent (and makes the SDK treat it as
# authenticated). Nothing is ever signed with it.
SECRET_PLACEHOLDER = "held-by-the-botvault-agent"  # noqa: S105 - a marker, not a secret
_FORM = "application/x-www-form-urlencoded; charset=utf-8"


def product_of(client_cls: type[Any]) -> str:
    """"kraken-spot" or "kraken-futures": the keys an SDK client class can use."""
    from kraken.base_api import FuturesClient, SpotClient

    if not isinstance(client_cls, type):
        raise InvalidInputError(f"{client_cls!r} is not a python-kraken-sdk client class",
                                hint="pass the class (e.g. kraken.spot.User), not an object")
    if issubclass(client_cls, SpotClient):
        return "kraken-spot"
    if issubclass(client_cls, FuturesClient):
        return "kraken-futures"
    raise InvalidInputError(f"{client_cls.__name__} is not a python-kraken-sdk client",
                            hint="pass a class from kraken.spot or kraken.futures")


def agent_signed_class(base: type[Any], entry: AgentEntry) -> type[Any]:
    """A subclass of SDK client class `base` bound to `entry` (a class attribute)."""
    spot = product_of(base) == "kraken-spot"

    # `super(made, self)`, never `type(self).__mro__[1]`: a user's subclass would recurse.
    def prepare_spot(self: Any, *, method: str, uri: str, params: dict[str, Any] | None = None,
                     auth: bool = True, do_json: bool = False, query_str: str | None = None,
                     extra_params: str | dict[str, Any] | None = None) -> tuple[Any, ...]:
        verb, url, headers, fields, query = super(made, self)._prepare_request(
            method=method, uri=uri, params=params, auth=False, do_json=do_json,
            query_str=query_str, extra_params=extra_params)
        if not auth:
            return verb, url, headers, fields, query
        if do_json:
            raise InvalidInputError("the agent signs URL-encoded Kraken Spot bodies, not JSON")
        if query:
            raise InvalidInputError("the agent signs Kraken Spot POST bodies, not query strings")
        signed = entry.sign(uri, urlencode(fields, doseq=True))
        # The SDK posts `data=fields`; a str is sent as is, so the signed bytes go out.
        return verb, url, {"Content-Type": _FORM, **signed.headers}, signed.body, query

    def prepare_futures(self: Any, method: str, uri: str,
                        post_params: dict[str, Any] | None = None,
                        query_params: dict[str, Any] | None = None,
                        extra_params: str | dict[str, Any] | None = None,
                        auth: bool = True) -> tuple[Any, ...]:
        verb, url, headers, payload, query = super(made, self)._prepare_request(
            method=method, uri=uri, post_params=post_params, query_params=query_params,
            extra_params=extra_params, auth=False)
        if not auth:
            return verb, url, headers, payload, query
        signed = entry.sign(uri, futures_post_data(query, payload), method=verb)
        return verb, url, {"Content-Type": _FORM, **signed.headers}, payload, query

    def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("auth", True):
            return super(made, self).request(*args, **kwargs)
        with entry.in_order(as_sdk_error):
            return super(made, self).request(*args, **kwargs)

    async def request_async(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("auth", True):
            return await super(made, self).request(*args, **kwargs)
        async with entry.in_order_async(as_sdk_error):
            return await super(made, self).request(*args, **kwargs)

    def sign_challenge(_self: Any, challenge: str) -> str:
        try:
            return entry.client.sign_challenge(entry.name, challenge)
        except VaultError as exc:
            raise as_sdk_error(exc) from exc

    methods: dict[str, Any] = {
        "__module__": base.__module__, "botvault_entry": entry,
        "_prepare_request": prepare_spot if spot else prepare_futures,
        "request": request_async if inspect.iscoroutinefunction(base.request) else request,
        "_get_kraken_signature": _never_here, "_get_kraken_futures_signature": _never_here}
    if hasattr(base, "get_sign_challenge"):  # kraken.futures.FuturesWSClient
        methods["get_sign_challenge"] = sign_challenge
    made: type[Any] = type(f"AgentSigned{base.__name__}", (base,), methods)
    return made


def _never_here(_self: Any, *_args: Any, **_kwargs: Any) -> str:
    raise InvalidInputError("this client's secret is in the agent; it cannot sign here")

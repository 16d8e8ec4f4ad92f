"""ccxt exchanges (sync and `ccxt.async_support`) whose private requests the agent signs and
whose requests on one key go out one at a time, in nonce order.

ccxt's request path is `fetch2`: throttle, `sign`, `fetch`, with optional retries, each
retry signing again. The subclass made here holds the key's `KeyOrder` around the whole of
`fetch2`, so the nonce the agent puts in a request and the response to it are inside one
hold, released however `fetch2` ends (answer, ccxt error, HTTP timeout, cancellation). Its
`sign` lets ccxt build the request with an empty HMAC key and replaces the signature with
the agent's. botvault errors leave `fetch2` as ccxt's own types (`client_errors`).

Tested with ccxt 4.5.90; `sign`'s and `fetch2`'s signatures change between minor versions,
hence the pin `ccxt>=4.5.90,<4.6`.
"""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidInputError
from ..exchanges.kraken import futures_post_data
from ..exchanges.profiles import CCXT_IDS as EXCHANGES  # ccxt id -> profile of its keys
from .agent_entry import AgentEntry
from .client_errors import as_ccxt_error

__all__ = ["EXCHANGES", "agent_signed_class", "signed_by_agent"]

_FORM = "application/x-www-form-urlencoded"


def agent_signed_class(base: type[Any], entry: AgentEntry) -> type[Any]:
    """A subclass of ccxt exchange class `base` bound to `entry` (a class attribute, so a
    subclass of the returned class is bound too)."""

    # `super(made, self)`, never `type(self).__mro__[1]`: a user's subclass of `made` would
    # find itself there and recurse.
    def sign(self: Any, path: str, api: Any = "public", method: str = "GET",
             params: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
        secret, self.secret = getattr(self, "secret", ""), ""
        try:  # an empty HMAC key: ccxt's signature is replaced by the agent's
            request: dict[str, Any] = super(made, self).sign(
                path, api, method, params if params is not None else {}, *args, **kwargs)
        finally:
            self.secret = secret
        return _agent_signed(self, request, api, method)

    def fetch2(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound: AgentEntry = self.botvault_entry
        with bound.in_order(as_ccxt_error):
            return super(made, self).fetch2(*args, **kwargs)

    async def fetch2_async(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound: AgentEntry = self.botvault_entry
        async with bound.in_order_async(as_ccxt_error):
            return await super(made, self).fetch2(*args, **kwargs)

    is_async = inspect.iscoroutinefunction(getattr(base, "fetch2", None))
    made: type[Any] = type(f"AgentSigned{base.__name__}", (base,), {
        "__module__": base.__module__, "botvault_entry": entry, "sign": sign,
        "check_required_credentials": _check_key_only,
        "fetch2": fetch2_async if is_async else fetch2})
    return made


def _check_key_only(self: Any, error: bool = True) -> bool:
    """ccxt requires a secret before signing; here the agent holds it."""
    if not self.apiKey and error:
        raise InvalidInputError("the exchange has no api key")
    return bool(self.apiKey)


def _agent_signed(self: Any, request: dict[str, Any], api: Any,
                  method: str) -> dict[str, Any]:
    api_name = api[0] if isinstance(api, list) else api
    if request.get("headers") is None or api_name == "public":
        return request
    entry: AgentEntry = self.botvault_entry
    request["body"], headers = signed_by_agent(
        entry, request["url"], method, request["body"],
        str(request["headers"].get("Content-Type", "")))
    request["headers"] = {"Content-Type": _FORM, "Accept": "application/json", **headers}
    return request


def signed_by_agent(entry: AgentEntry, url: str, method: str, body: str | None,
                    content_type: str) -> tuple[str | None, dict[str, str]]:
    """The body to send and the agent's auth headers for one private Kraken request as ccxt
    built it: the one rule for the subclass (`sign`) and the config's HTTP session.
    Spot: the agent puts the key's nonce in the URL-encoded body (JSON is refused). Futures:
    the query string followed by the body is what is signed (`futures_post_data`)."""
    parts = urlsplit(url)
    if entry.exchange == "kraken-spot":
        if "json" in content_type:
            raise InvalidInputError("the agent signs URL-encoded Kraken Spot bodies, not JSON",
                                    hint=f"{parts.path} sends a JSON body; it cannot be "
                                         "signed here")
        signed = entry.sign(parts.path, body or "")
        return signed.body, signed.headers
    signed = entry.sign(parts.path, futures_post_data(parts.query, body or ""),
                        method=method.upper())
    return body, signed.headers

"""krakenex: an `API` whose private queries the agent signs, one at a time per key.

krakenex's request path is `query_private` (nonce, signature, then `_query` posts and reads
the answer). The subclass holds the key's `KeyOrder` around the whole of it, asks the agent
for the signed body and headers, and posts that body unchanged through krakenex's own
`_query`. `_query` is private to krakenex, hence the pin `krakenex>=2.2.2,<2.3`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from ..errors import InvalidInputError
from .agent_entry import AgentEntry

__all__ = ["agent_signed_class"]

_FORM = "application/x-www-form-urlencoded; charset=utf-8"


def agent_signed_class(base: type[Any], entry: AgentEntry) -> type[Any]:
    """A subclass of `krakenex.API` bound to `entry` (a class attribute)."""

    def query_private(self: Any, method: str, data: dict[str, Any] | None = None,
                      timeout: float | None = None) -> Any:
        fields = dict(data or {})
        if "nonce" in fields:
            raise InvalidInputError("the agent sets the nonce; leave it out of the data")
        urlpath = f"/{self.apiversion}/private/{method}"
        with entry.order.hold(entry.order_timeout):
            signed = entry.sign(urlpath, urlencode(fields, doseq=True))
            # A str body is posted as is (requests encodes only dicts): the signed bytes.
            return self._query(urlpath, signed.body, {"Content-Type": _FORM, **signed.headers},
                               timeout=timeout)

    def refuse_sign(_self: Any, *_args: Any, **_kwargs: Any) -> str:
        raise InvalidInputError("this client's secret is in the agent; it cannot sign here")

    made: type[Any] = type(f"AgentSigned{base.__name__}", (base,), {
        "__module__": base.__module__, "botvault_entry": entry,
        "query_private": query_private, "_sign": refuse_sign})
    return made

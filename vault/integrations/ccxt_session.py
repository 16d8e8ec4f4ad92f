"""A `requests.Session` for a (synchronous) ccxt config: the agent signs at the wire.

`ccxt_config.ccxt_agent_config` puts one of these in the config dict as ccxt's `session`, with
the public api key and a placeholder secret (ccxt insists on one and signs with it; that
signature never leaves the process). Every private request ccxt sends passes through
`request` here, which, holding the key's `KeyOrder` from signing until the response arrives:
asks the agent to sign it (the agent puts in the key's own nonce and checks the endpoint
against the entry's scope), replaces ccxt's auth headers with the agent's, and sends it. So a
bot built from a config dict holds neither the secret nor the passphrase, and its requests on
one key go out one at a time in nonce order, like `agent_signed.ccxt_exchange`'s.

Public requests (no auth header) pass through unchanged. botvault errors leave as ccxt's own
types (`client_errors`), so ccxt's handlers and retries see what they expect.
"""

from __future__ import annotations

from typing import Any

import requests

from ..errors import InvalidInputError, VaultError
from .agent_entry import AgentEntry
from .ccxt_agent import signed_by_agent
from .client_errors import as_ccxt_error

__all__ = ["PLACEHOLDER_SECRET", "AgentSigningSession"]

# Valid base64 (ccxt decodes it before signing), obviously not a key. ccxt's signature made
# with it is dropped below, never sent.
PLACEHOLDER_SECRET = "Ym90dmF1bHQ6IHRoZSBhZ2VudCBzaWducyB0aGlzIHJlcXVlc3Q="  # noqa: S105 - not a key
_AUTH = frozenset({"api-key", "api-sign", "apikey", "authent", "nonce"})


class AgentSigningSession(requests.Session):
    """ccxt's HTTP session for one agent entry; see the module docstring."""

    def __init__(self, entry: AgentEntry) -> None:
        super().__init__()
        self.botvault_entry = entry

    def __repr__(self) -> str:
        return f"AgentSigningSession({self.botvault_entry!r})"

    def request(  # type: ignore[override]  # ccxt passes text and keywords only
            self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.get("headers") or {})
        if not any(k.lower() in ("api-key", "apikey") for k in headers):
            return super().request(method, url, *args, **kwargs)  # public: as it is
        entry = self.botvault_entry
        try:
            with entry.order.hold(entry.order_timeout):
                body = kwargs.get("data")
                text = body.decode("utf-8") if isinstance(body, bytes) else (body or "")
                if not isinstance(text, str):
                    raise InvalidInputError("the agent signs text bodies only")
                out, signed = signed_by_agent(entry, url, method, text,
                                              str(headers.get("Content-Type", "")))
                kwargs["data"] = out.encode("utf-8") if out else body
                kept = {k: v for k, v in headers.items() if k.lower() not in _AUTH}
                kwargs["headers"] = {**kept, **signed}
                return super().request(method, url, *args, **kwargs)
        except VaultError as exc:
            raise as_ccxt_error(exc) from exc

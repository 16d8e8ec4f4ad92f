"""Which API a request is for, whether it is private, and its endpoint's name.

`/0/...` goes to Spot, `/derivatives/...` (and Futures' `/api/history/` and `/api/charts/`,
which ccxt and the SDK use) to Futures. Spot is private under `/0/private/`. A Futures request
is private when its path is in botvault's table of private endpoints or it carries Futures
credentials: a request that authenticates is treated as private whatever its path, so it is
never forwarded unchecked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..exchanges.endpoints import KRAKEN_FUTURES, KRAKEN_SPOT, known_paths, normalise_path
from .kraken_errors import Api

__all__ = ["AUTH_HEADERS", "Route", "route"]

# Headers a bot signs with; never forwarded (the real ones replace them).
AUTH_HEADERS = frozenset({"api-key", "api-sign", "apikey", "authent", "nonce"})
_FUTURES_ROOTS = ("/derivatives/", "/api/history/", "/api/charts/", "/api/feeschedules/")
_MAX_PATH = 512
_PLAIN = re.compile(r"[A-Za-z0-9/_.-]+")


@dataclass(frozen=True)
class Route:
    api: Api
    private: bool
    endpoint: str  # normalised path, as the endpoint tables key it

    @property
    def exchange(self) -> str:
        return KRAKEN_SPOT if self.api is Api.SPOT else KRAKEN_FUTURES


def route(path: str, header_names: set[str]) -> Route | None:
    """The route of `path` (no query string), or None when it is no Kraken path.

    `header_names` are the request's header names, lower-cased.
    """
    # Kraken's paths are plain names. Anything else (percent-escapes above all) could read as
    # one endpoint to the scope tables and as another to the exchange once decoded.
    if len(path) > _MAX_PATH or not _PLAIN.fullmatch(path) or ".." in path or "//" in path:
        return None
    if path.startswith("/0/"):
        return Route(Api.SPOT, path.startswith("/0/private/"), normalise_path(KRAKEN_SPOT, path))
    if path.startswith(_FUTURES_ROOTS):
        endpoint = normalise_path(KRAKEN_FUTURES, path)
        private = endpoint in known_paths(KRAKEN_FUTURES) or bool(
            header_names & {"apikey", "authent"})
        return Route(Api.FUTURES, private, endpoint)
    return None

"""The gateway: a local HTTP server that speaks Kraken's REST APIs for bots holding a grant.

A bot changes its base URL (to the gateway) and its credentials (to a grant). Each request is
checked and signed by the agent in one operation (`grants`), paced under Kraken's per-key
counters (`governor`), sent one at a time per real key in nonce order
(`botvault.request_lock.KeyOrder`) and forwarded with TLS verified (`forwarding`). The
gateway process holds no secret: it never sees the real key's secret nor the grant's.

Importing this package imports its HTTP stack (httptools, multidict, and aiohttp for etcd);
nothing outside `botvault gateway` imports it.
"""

from __future__ import annotations

from .config import GatewayConfig, ListenAddress, parse_listen

__all__ = ["GatewayConfig", "ListenAddress", "parse_listen"]

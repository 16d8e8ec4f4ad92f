"""The exchange profiles an entry can have, and the facts about them that several modules
use: each named here once (validation, endpoints, handover, importers, doctor, cli)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "CCXT_IDS",
    "GENERIC",
    "KRAKEN",
    "KRAKEN_FUTURES",
    "KRAKEN_KEYS_PER_ACCOUNT",
    "KRAKEN_SPOT",
    "PROFILES",
    "VAR_NAMES",
    "key_id",
]

KRAKEN_FUTURES = "kraken-futures"
KRAKEN_SPOT = "kraken-spot"
GENERIC = "generic"  # any other exchange: the secret is stored as given, nothing is signed
# Every profile, in the order `--help` and error hints list them.
PROFILES = (KRAKEN_FUTURES, KRAKEN_SPOT, GENERIC)
# The profiles whose secrets are Kraken's base64 and whose requests botvault signs.
KRAKEN = frozenset({KRAKEN_SPOT, KRAKEN_FUTURES})

# Kraken allows at most this many API keys per account (`add` warns at it, doctor reports).
KRAKEN_KEYS_PER_ACCOUNT = 50

# ccxt / freqtrade exchange ids -> the profile of the keys they use.
CCXT_IDS: Mapping[str, str] = MappingProxyType({"kraken": KRAKEN_SPOT,
                                                "krakenfutures": KRAKEN_FUTURES})

# The (key, secret) environment variables a Kraken profile's keys are handed over in, and
# that the .env importer recognises.
VAR_NAMES: Mapping[str, tuple[str, str]] = MappingProxyType({
    KRAKEN_FUTURES: ("KRAKEN_FUTURES_API_KEY", "KRAKEN_FUTURES_API_SECRET"),
    KRAKEN_SPOT: ("KRAKEN_API_KEY", "KRAKEN_API_SECRET"),
})


@functools.lru_cache(maxsize=4096)
def key_id(exchange: str, api_key: str) -> str:
    """The one identity of a real exchange key: its nonce counter and its request lock
    (botvault.request_lock) are both keyed by it, so they can never disagree. Here, with the
    profiles, so that taking a key's lock loads no nonce code (`run` starts faster).

    Cached (api keys are public identifiers): the agent asks it several times for every
    signed request, and the hash was a few microseconds of each (bench/bench_agent.py)."""
    import hashlib

    material = f"{exchange}\0{api_key}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(material, digest_size=16, person=b"botvault-nonce").hexdigest()

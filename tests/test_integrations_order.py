"""Must-hold: each agent-signed integration orders its own requests. 4 real processes x 150
private requests on one key, at a strict local Kraken (no nonce window): all 600 accepted, and
never two of that key's requests in flight at once. No lock in the bots' code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent_support import SPOT_AND_FUTURES, Keys, running
from tests.integration_bots import AGENT_MODES, ENTRY_OF
from tests.kraken_server import StrictKraken

pytest.importorskip("ccxt")
pytest.importorskip("kraken")
pytest.importorskip("krakenex")

ENTRIES = SPOT_AND_FUTURES
PUBKEY = {"spot": "PUBSPOTKEY", "fut": "PUBFUTKEY"}


@pytest.fixture
def kraken(keys: Keys) -> Iterator[StrictKraken]:
    # A little latency widens the window in which out-of-order senders get caught; the rate
    # limits are the server's own tests' business (600 Balance calls would exceed them).
    server = StrictKraken(latency=0.001, enforce_rate=False)
    server.add_key(PUBKEY["spot"], keys.secrets["spot"], "spot")
    server.add_key(PUBKEY["fut"], keys.secrets["fut"], "futures")
    with server, running(keys):
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("mode", AGENT_MODES)
def test_four_processes_share_one_key_without_a_rejection(kraken: StrictKraken, mode: str
                                                          ) -> None:
    from tests.integration_bots import run_bots

    failures = run_bots(mode, kraken.url)
    assert kraken.rejected() == {}
    assert kraken.accepted() == 600
    assert failures == [0, 0, 0, 0]
    pubkey = PUBKEY[ENTRY_OF[mode.split("-", 1)[1]]]
    assert kraken.max_in_flight(pubkey) == 1

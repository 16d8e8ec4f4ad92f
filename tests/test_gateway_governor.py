"""The gateway's rate governor: Kraken's per-key counters, counted when requests are sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botvault.gateway.kraken_errors import Api
from botvault.rate_limits import (
    FUTURES_BUDGET,
    SLACK,
    SPOT_TIERS,
    Bucket,
    Governor,
    futures_cost,
    spot_cost,
)

from .kraken_server import SPOT_TIERS as SERVER_TIERS


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def _send(governor: Governor, clock: Clock, api: Api, key: str, endpoint: str) -> float:
    """Send one request as the gateway does: wait what admit says, then go. The wait."""
    waited = 0.0
    while (wait := governor.admit(api, key, endpoint)) > 0:
        clock.now += wait
        waited += wait
    return waited


def test_tiers_and_costs_are_krakens() -> None:
    assert SPOT_TIERS == SERVER_TIERS == {
        "starter": (15.0, 0.33), "intermediate": (20.0, 0.5), "pro": (20.0, 1.0)}
    assert spot_cost("/0/private/Balance") == 1
    assert spot_cost("/0/private/Ledgers") == spot_cost("/0/private/TradesHistory") == 2
    assert spot_cost("/0/private/QueryLedgers") == spot_cost("/0/private/QueryTrades") == 2
    assert spot_cost("/0/private/AddOrder") == spot_cost("/0/private/CancelOrder") == 0
    assert futures_cost("/api/v3/sendorder") == 10
    assert futures_cost("/api/v3/cancelallorders") == 25
    assert futures_cost("/api/v3/accounts") == 2


@pytest.mark.parametrize("tier", ["starter", "intermediate", "pro"])
def test_spot_burst_up_to_the_maximum_then_waits_at_the_decay(tier: str) -> None:
    clock = Clock()
    governor = Governor(tier, clock=clock)
    maximum, decay = SPOT_TIERS[tier]
    waits = [_send(governor, clock, Api.SPOT, "k", "/0/private/Balance")
             for _ in range(int(maximum))]
    # All at once but the last, which would bring the counter to exactly the maximum.
    assert waits[:-1] == [0.0] * (int(maximum) - 1)
    assert waits[-1] == pytest.approx(SLACK)
    following = [_send(governor, clock, Api.SPOT, "k", "/0/private/Balance") for _ in range(3)]
    assert following == pytest.approx([1 / decay] * 3, rel=1e-6)


def test_a_wait_counts_nothing_until_the_request_goes() -> None:
    clock = Clock()
    governor = Governor("pro", clock=clock)
    for _ in range(20):
        _send(governor, clock, Api.SPOT, "k", "/0/private/Balance")
    first = governor.admit(Api.SPOT, "k", "/0/private/Balance")
    assert first > 0
    # Asked again (a request refused after asking, or asking twice): still the same wait.
    assert governor.admit(Api.SPOT, "k", "/0/private/Balance") == pytest.approx(first)


def test_orders_are_outside_the_spot_counter_and_keys_are_separate() -> None:
    clock = Clock()
    governor = Governor("starter", clock=clock)
    for _ in range(15):
        _send(governor, clock, Api.SPOT, "a", "/0/private/Balance")
    assert governor.admit(Api.SPOT, "a", "/0/private/AddOrder") == 0
    assert governor.admit(Api.SPOT, "a", "/0/private/CancelOrder") == 0
    assert governor.admit(Api.SPOT, "b", "/0/private/Balance") == 0
    assert governor.admit(Api.SPOT, "a", "/0/private/Balance") > 0


def test_ledger_calls_cost_two() -> None:
    clock = Clock()
    governor = Governor("pro", clock=clock)
    for _ in range(9):
        assert governor.admit(Api.SPOT, "k", "/0/private/Ledgers") == 0
    assert governor.admit(Api.SPOT, "k", "/0/private/Balance") == 0  # 19
    assert governor.admit(Api.SPOT, "k", "/0/private/Ledgers") == pytest.approx(1 + SLACK)


def test_decay_over_time_frees_the_counter() -> None:
    clock = Clock()
    governor = Governor("pro", clock=clock)
    for _ in range(20):
        _send(governor, clock, Api.SPOT, "k", "/0/private/Balance")
    clock.now += 5
    waits = [governor.admit(Api.SPOT, "k", "/0/private/Balance") for _ in range(6)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] == pytest.approx(1.0)


def test_futures_budget_of_500_units_per_10_seconds() -> None:
    clock = Clock()
    governor = Governor("starter", clock=clock)
    waits = [_send(governor, clock, Api.FUTURES, "f", "/api/v3/sendorder") for _ in range(50)]
    assert waits[:49] == [0.0] * 49 and waits[49] == pytest.approx(SLACK)
    assert governor.admit(Api.FUTURES, "f", "/api/v3/sendorder") == pytest.approx(0.2)
    clock.now += 10
    assert governor.admit(Api.FUTURES, "f", "/api/v3/accounts") == 0
    assert FUTURES_BUDGET == 500


def _server_level(level: float, at: float, now: float, decay: float) -> float:
    # StrictKraken's own arithmetic (tests/kraken_server.py), written out again here.
    return max(0.0, level - (now - at) * decay)


@settings(max_examples=300, deadline=None)
@given(tier=st.sampled_from(["starter", "intermediate", "pro"]),
       arrivals=st.lists(st.tuples(st.one_of(st.just(0.0), st.just(0.0), st.floats(0, 3)),
                                   st.sampled_from([0, 1, 1, 1, 2]),
                                   st.sampled_from([0.0, 0.05]) | st.floats(0, 0.05)),
                         min_size=1, max_size=120))
def test_what_the_governor_lets_through_never_exceeds_the_exchange_counter(
        tier: str, arrivals: list[tuple[float, int, float]]) -> None:
    """Whatever the gaps between requests, and however long (up to 50 ms) each then takes
    to reach the exchange, a Kraken-like counter never goes over."""
    maximum, decay = SPOT_TIERS[tier]
    bucket = Bucket(maximum, decay)
    now, level, at, last_arrival = 0.0, 0.0, 0.0, 0.0
    for gap, cost, transit in arrivals:
        now += gap
        now += bucket.admit(cost, now)
        assert bucket.admit(cost, now) == 0
        bucket.record(cost, now)
        if cost == 0:
            continue
        arrival = max(now + transit, last_arrival)  # one at a time: in order
        last_arrival = arrival
        level = _server_level(level, at, arrival, decay)
        at = arrival
        assert level + cost <= maximum + 1e-9
        level += cost

"""The gateway's rate governor: Kraken's per-key counters, first come first served, a bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botvault.gateway.governor import (
    FUTURES_BUDGET,
    SLACK,
    SPOT_TIERS,
    Bucket,
    Governor,
    RateLimited,
    futures_cost,
    spot_cost,
)
from botvault.gateway.kraken_errors import Api

from .kraken_server import SPOT_TIERS as SERVER_TIERS


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


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
    governor = Governor(tier, bound=1000, clock=clock)
    maximum, decay = SPOT_TIERS[tier]
    waits = [governor.reserve(Api.SPOT, "k", "/0/private/Balance") for _ in range(int(maximum))]
    assert waits == [0.0] * int(maximum)
    following = [governor.reserve(Api.SPOT, "k", "/0/private/Balance") for _ in range(3)]
    assert following == pytest.approx([1 / decay, 2 / decay, 3 / decay], rel=1e-6)


def test_orders_are_outside_the_spot_counter_and_keys_are_separate() -> None:
    clock = Clock()
    governor = Governor("starter", bound=30, clock=clock)
    for _ in range(15):
        governor.reserve(Api.SPOT, "a", "/0/private/Balance")
    assert governor.reserve(Api.SPOT, "a", "/0/private/AddOrder") == 0
    assert governor.reserve(Api.SPOT, "a", "/0/private/CancelOrder") == 0
    assert governor.reserve(Api.SPOT, "b", "/0/private/Balance") == 0
    assert governor.reserve(Api.SPOT, "a", "/0/private/Balance") > 0


def test_ledger_calls_cost_two() -> None:
    governor = Governor("pro", bound=100, clock=Clock())
    for _ in range(10):
        assert governor.reserve(Api.SPOT, "k", "/0/private/Ledgers") == 0
    assert governor.reserve(Api.SPOT, "k", "/0/private/Balance") == pytest.approx(1.0)


def test_first_come_first_served_a_cheap_request_does_not_overtake() -> None:
    clock = Clock()
    governor = Governor("pro", bound=100, clock=clock)
    for _ in range(20):
        governor.reserve(Api.SPOT, "k", "/0/private/Balance")
    ledger = governor.reserve(Api.SPOT, "k", "/0/private/Ledgers")  # needs 2 free: 2 s
    balance = governor.reserve(Api.SPOT, "k", "/0/private/Balance")  # would fit at 1 s alone
    assert ledger == pytest.approx(2.0)
    assert balance >= ledger
    assert balance == pytest.approx(3.0)


def test_decay_over_time_frees_the_counter() -> None:
    clock = Clock()
    governor = Governor("pro", bound=100, clock=clock)
    for _ in range(20):
        governor.reserve(Api.SPOT, "k", "/0/private/Balance")
    clock.now += 5
    waits = [governor.reserve(Api.SPOT, "k", "/0/private/Balance") for _ in range(6)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] == pytest.approx(1.0)


def test_a_wait_beyond_the_bound_is_refused_and_books_nothing() -> None:
    clock = Clock()
    governor = Governor("starter", bound=5, clock=clock)
    for _ in range(15):
        governor.reserve(Api.SPOT, "k", "/0/private/Balance")
    assert governor.reserve(Api.SPOT, "k", "/0/private/Balance") == pytest.approx(1 / 0.33)
    with pytest.raises(RateLimited) as caught:
        governor.reserve(Api.SPOT, "k", "/0/private/Balance")  # 2 / 0.33 = 6.06 s > 5
    assert caught.value.wait == pytest.approx(2 / 0.33)
    with pytest.raises(RateLimited):
        governor.reserve(Api.SPOT, "k", "/0/private/Balance")  # same again: nothing booked
    clock.now += 2 / 0.33 - 5 + 0.01
    assert governor.reserve(Api.SPOT, "k", "/0/private/Balance") <= 5


def test_futures_budget_of_500_units_per_10_seconds() -> None:
    clock = Clock()
    governor = Governor("starter", bound=30, clock=clock)
    for _ in range(50):
        assert governor.reserve(Api.FUTURES, "f", "/api/v3/sendorder") == 0
    assert governor.reserve(Api.FUTURES, "f", "/api/v3/sendorder") == pytest.approx(0.2)
    assert governor.reserve(Api.FUTURES, "f", "/api/v3/cancelallorders") == pytest.approx(0.7)
    clock.now += 10
    assert governor.reserve(Api.FUTURES, "f", "/api/v3/accounts") == 0
    assert FUTURES_BUDGET == 500


def test_admit_counts_real_sends_with_slack() -> None:
    clock = Clock()
    governor = Governor("pro", bound=100, clock=clock)
    waits = [governor.admit(Api.SPOT, "k", "/0/private/Balance") for _ in range(20)]
    # The 20th would bring the counter to exactly 20: held back by the slack.
    assert waits[:19] == [0.0] * 19
    assert waits[19] == pytest.approx(SLACK)
    clock.now += SLACK
    assert governor.admit(Api.SPOT, "k", "/0/private/Balance") == 0
    assert governor.admit(Api.SPOT, "k", "/0/private/AddOrder") == 0
    assert governor.admit(Api.SPOT, "k", "/0/private/Balance") == pytest.approx(1.0)


def _server_level(level: float, at: float, now: float, decay: float) -> float:
    # StrictKraken's own arithmetic (tests/kraken_server.py), written out again here.
    return max(0.0, level - (now - at) * decay)


@settings(max_examples=300, deadline=None)
@given(tier=st.sampled_from(["starter", "intermediate", "pro"]),
       arrivals=st.lists(st.tuples(st.floats(0, 3), st.sampled_from([0, 1, 1, 1, 2]),
                                   st.floats(0, 0.5), st.floats(0, 0.05)),
                         min_size=1, max_size=80))
def test_what_the_governor_lets_through_never_exceeds_the_exchange_counter(
        tier: str, arrivals: list[tuple[float, int, float, float]]) -> None:
    """Whatever arrives, however late after its booked start each request gets the key's
    order, and however long (up to SLACK) it then takes to reach the exchange, a Kraken-like
    counter never goes over; booked starts keep arrival order."""
    maximum, decay = SPOT_TIERS[tier]
    bucket = Bucket(maximum, decay)
    now, level, at, last_start, free_at, last_arrival = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for gap, cost, lock_delay, transit in arrivals:
        now += gap
        start = bucket.reserve(cost, now, bound=1e9)
        assert start >= now
        if cost == 0:
            continue
        assert start >= last_start
        last_start = start
        send = max(start + lock_delay, free_at)  # one at a time: after the previous answer
        send += bucket.admit(cost, send)
        assert bucket.admit(cost, send) == 0
        bucket.record(cost, send)
        free_at = send
        arrival = max(send + transit, last_arrival)  # in order on one connection at a time
        last_arrival = arrival
        level = _server_level(level, at, arrival, decay)
        at = arrival
        assert level + cost <= maximum + 1e-9
        level += cost

"""Two gateways, one key, etcd (issue 21): a real 3-member etcd cluster on loopback, two
copies of one vault each with its real agent and `botvault gateway --etcd`, real client
libraries in bot processes split across the two, the strict stand-in as the exchange."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from botvault import Vault
from botvault.exchanges.kraken import sign_spot
from botvault.gateway.kraken_errors import RATE_LIMIT_ERROR

from .agent_support import eventually
from .etcd_cluster import ETCD_MISSING, SKIP_ETCD
from .etcd_sites import Sites, run_bots, two_sites
from .gateway_stack import Credential
from .kraken_server import http_json

pytestmark = pytest.mark.skipif(SKIP_ETCD, reason=ETCD_MISSING)


def _plan(sites: Sites) -> list[tuple[str, str, Credential]]:
    a, b = sites.urls
    return [("ccxt", a, sites.grants[0]), ("sdk", a, sites.grants[1]),
            ("krakenex", b, sites.grants[2]), ("plain", b, sites.grants[3])]


def _strictly_increasing(nonces: list[int]) -> bool:
    return all(x < y for x, y in itertools.pairwise(nonces))


_APART = itertools.count()


def _balance(url: str, cred: Credential) -> tuple[int, dict[str, object]]:
    # A recent nonce, each its own: the agent accepts a grant-signed request once.
    nonce = time.time_ns() // 1000 + next(_APART)
    body = urlencode({"nonce": nonce})
    path = "/0/private/Balance"
    return http_json(url, "POST", path, body, {
        "API-Key": cred.api_key, "API-Sign": sign_spot(cred.api_secret, path, nonce, body),
        "Content-Type": "application/x-www-form-urlencoded"})


@pytest.mark.slow
def test_four_bots_on_two_gateways_600_of_600_one_at_a_time(tmp_path: Path) -> None:
    with two_sites(tmp_path) as sites:
        tallies = run_bots(_plan(sites), 150)
        assert tallies == [{"ok": 150}] * 4
        kraken = sites.kraken
        assert kraken.accepted() == 600 and kraken.rejected() == {}
        # One at a time across both machines: the etcd lock spans nonce to answer.
        assert kraken.max_in_flight(next(iter(kraken.keys))) == 1
        assert len(kraken.nonces) == 600 and _strictly_increasing(kraken.nonces)


@pytest.mark.slow
def test_one_etcd_member_killed_mid_run_changes_nothing(tmp_path: Path) -> None:
    with two_sites(tmp_path) as sites:
        killed: list[int] = []

        def kill_a_member() -> None:
            assert eventually(lambda: sites.kraken.accepted() >= 200, timeout=120)
            killed.append(sites.cluster.leader())  # the leader: a new one must be elected
            sites.cluster.kill(killed[0])

        tallies = run_bots(_plan(sites), 150, during=kill_a_member)
        accepted, rejected = sites.kraken.accepted(), sites.kraken.rejected()
        nonces = list(sites.kraken.nonces)
        member = sites.cluster.members[killed[0]].process
    logs = "".join(p.read_text() for p in sorted(tmp_path.glob("gateway-*.log")))
    assert tallies == [{"ok": 150}] * 4, (tallies, rejected, logs)
    assert accepted == 600 and rejected == {}
    assert _strictly_increasing(nonces)
    assert member is not None and member.poll() is not None  # it was really down


@pytest.mark.slow
def test_a_gateway_killed_mid_run_its_bots_fail_the_others_go_on(tmp_path: Path) -> None:
    with two_sites(tmp_path, lease_ttl=2) as sites:
        def kill_gateway_a() -> None:
            assert eventually(lambda: sites.kraken.accepted() >= 150, timeout=120)
            os.kill(sites.gateways[0].pid, signal.SIGKILL)  # no cleanup: its lease expires

        tallies = run_bots(_plan(sites), 150, during=kill_gateway_a)
        assert tallies[2:] == [{"ok": 150}] * 2  # gateway B's bots: every request
        failed_a = sum(n for t in tallies[:2] for k, n in t.items() if k != "ok")
        assert failed_a > 0  # gateway A's bots: cut off
        assert sites.kraken.rejected() == {}  # nothing that reached the exchange failed
        answered = sum(t.get("ok", 0) for t in tallies)
        # At most one request more was accepted than answered: the one A was killed in.
        assert answered <= sites.kraken.accepted() <= answered + 1
        assert _strictly_increasing(sites.kraken.nonces)


def test_first_use_starts_above_local_nonces_and_a_later_machine_above_etcds(
        tmp_path: Path) -> None:
    with two_sites(tmp_path) as sites:
        keys_a, keys_b = sites.keys
        # Machine A used the key on its own first, far ahead of the clock.
        with Vault.open_with_key(keys_a.path, keys_a.data_key) as vault:
            ahead = vault.next_nonce("spot", at_least=vault.next_nonce("spot") + 5_000)
        assert _balance(sites.urls[0], sites.grants[0])[1]["error"] == []
        first = sites.kraken.nonces[-1]
        assert first > ahead  # the key's first nonce through etcd: above A's local ones
        # Machine B joins later; its own counter is far behind A's: it starts above etcd's.
        assert _balance(sites.urls[1], sites.grants[1])[1]["error"] == []
        joined = sites.kraken.nonces[-1]
        assert joined > first
        # ... and B's local counter now stands at least there: never below again.
        with Vault.open_with_key(keys_b.path, keys_b.data_key) as vault:
            last_b, _ = vault.peek_nonce("spot")
        assert last_b is not None and last_b >= joined


@pytest.mark.slow
def test_without_quorum_requests_are_refused_unsent_never_local(tmp_path: Path) -> None:
    with two_sites(tmp_path) as sites:
        assert _balance(sites.urls[0], sites.grants[0])[1]["error"] == []
        before = sites.kraken.accepted()
        sites.cluster.kill(1)
        sites.cluster.kill(2)  # one of three left: no quorum
        started = time.monotonic()
        status, doc = _balance(sites.urls[0], sites.grants[0])
        assert (status, doc["error"]) == (503, ["EService:Unavailable"])
        assert time.monotonic() - started < 20
        status, doc = _balance(sites.urls[1], sites.grants[1])
        assert (status, doc["error"]) == (503, ["EService:Unavailable"])
        assert sites.kraken.accepted() == before  # nothing was sent


def test_the_rate_counter_is_shared_by_both_gateways(tmp_path: Path) -> None:
    """Pro tier: 20 units, decaying 1 per second. 30 counted calls alternating between the
    two gateways at once: with a counter each, both would send theirs and the exchange
    would refuse the excess; shared, the gateways hold it back themselves (a wait over
    --max-wait is answered EAPI:Rate limit exceeded, unsent) and the exchange refuses none."""
    with two_sites(tmp_path, gateway_args=("--max-wait", "0.5")) as sites:
        answers = [_balance(sites.urls[i % 2], sites.grants[i % 2])[1]["error"]
                   for i in range(30)]
        held_back = answers.count([RATE_LIMIT_ERROR])
        assert answers.count([]) + held_back == 30, answers
        assert held_back >= 5  # the gateways' shared counter stopped them
        assert sites.kraken.rejected() == {}  # not one over Kraken's counter
        assert sites.kraken.accepted() == answers.count([]) <= 22

"""`botvault grant add/edit/show/list` with a trading policy, through CliRunner; the grant
record's compatibility (a grant without a policy is written exactly as before)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from botvault import Vault
from botvault._testing import CHEAPEST_TEST_ONLY
from botvault.grant_ops import add_grant, get_grant
from botvault.grant_record import Grant
from botvault.trading_budget import DailyBudget
from botvault.trading_policy import Policy
from tests import test_grants_cli as grants_cli
from tests.conftest import PASSPHRASE, kraken_secret


def invoke(*args: str) -> tuple[int, str, str]:
    return grants_cli.invoke(*args, input=f"{PASSPHRASE}\n")  # the passphrase on stdin


@pytest.fixture
def made(vault_path: Path) -> Path:
    with Vault.create(vault_path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY) as v:
        v.add("spot", exchange="kraken-spot", api_key="PUBSPOT", api_secret=kraken_secret(),
              general="full", withdrawal="full")
    return vault_path


def test_add_show_edit_list(made: Path) -> None:
    code, _out, err = invoke("grant", "add", "bot", "--key", "spot", "--general", "full",
                             "--withdrawal", "full", "--pairs", "XBTUSD,ETHUSD",
                             "--order-types", "limit", "--max-order-volume", "0.5",
                             "--max-order-notional", "1000", "--max-daily-notional", "5000",
                             "--withdraw-keys", "cold", "--max-withdraw-amount", "0.1")
    assert code == 0, err
    assert "policy: pairs: XBTUSD,ETHUSD" in err
    with Vault.open(made, PASSPHRASE) as v:
        policy = get_grant(v, "bot").policy
    assert policy == Policy(pairs=("XBTUSD", "ETHUSD"), order_types=("limit",),
                            max_order_volume=Decimal("0.5"), max_order_notional=Decimal(1000),
                            max_daily_notional=Decimal(5000), withdraw_keys=("cold",),
                            max_withdraw_amount=Decimal("0.1"))
    DailyBudget(made).charge("bot", Decimal("123.5"), Decimal(5000))
    code, out, err = invoke("grant", "show", "bot")
    assert code == 0, err
    assert "max-order-volume:" in out and "0.5" in out
    assert "spent:       123.5 of 5000 on " in out
    code, out, _ = invoke("grant", "show", "bot", "--json")
    doc = json.loads(out)
    assert doc["policy"]["max_daily_notional"] == "5000"
    assert doc["spent_today"]["notional"] == "123.5"
    code, out, err = invoke("grant", "edit", "bot", "--pairs", "none", "--max-order-volume",
                            "2", "--reduce-only")
    assert code == 0, err
    with Vault.open(made, PASSPHRASE) as v:
        policy = get_grant(v, "bot").policy
    assert policy.pairs is None and policy.max_order_volume == 2 and policy.reduce_only
    code, out, _ = invoke("grant", "list")
    assert "max-order-volume: 2" in out
    code, _, err = invoke("grant", "edit", "bot")
    assert code == 2 and "changes nothing" in err


@pytest.mark.parametrize("bad", [("--max-order-volume", "1e3"), ("--max-order-notional", "0"),
                                 ("--order-types", "yolo"), ("--pairs", "XBT USD"),
                                 ("--max-daily-notional", "-5")])
def test_bad_limits_are_refused_before_anything_is_written(made: Path,
                                                          bad: tuple[str, str]) -> None:
    code, _, err = invoke("grant", "add", "bot", "--key", "spot", "--general", "full",
                          "--withdrawal", "none", *bad)
    assert code == 2, err
    assert "botvault: error:" in err
    with Vault.open(made, PASSPHRASE) as v:
        assert not [g for g in v.records("grant:") if isinstance(g, Grant)]


def test_a_grant_without_a_policy_is_written_as_before(made: Path) -> None:
    with Vault.open(made, PASSPHRASE) as v:
        plain = add_grant(v, "plain", entry="spot", general="full", withdrawal="none")
        limited = add_grant(v, "limited", entry="spot", general="full", withdrawal="none",
                            policy=Policy(max_order_volume=Decimal(1)))
    assert b'"policy"' not in plain.to_plaintext() and b'"v":1,' in plain.to_plaintext()
    assert b'"v":2,' in limited.to_plaintext()
    again = Grant.from_plaintext(_doc(limited.to_plaintext()), b"")
    assert again.policy == limited.policy


def _doc(plaintext: bytes) -> bytes:
    start = plaintext.index(b"{")
    return plaintext[start:plaintext.rindex(b"}") + 1]


def test_a_restore_keeps_the_policy_the_grant_has_now(made: Path) -> None:
    from botvault.grant_policy import edit_policy

    with Vault.open(made, PASSPHRASE) as v:
        add_grant(v, "bot", entry="spot", general="full", withdrawal="none",
                  policy=Policy(max_order_volume=Decimal(10)))
        wide = v.generation
        edit_policy(v, "bot", {"max_order_volume": "0.1"})  # narrowed after a bad day
        v.restore(wide)
    with Vault.open(made, PASSPHRASE) as v:
        assert get_grant(v, "bot").policy.max_order_volume == Decimal("0.1")

"""The agent enforces a grant's policy itself: a bot that talks to the agent directly (the
in-process integrations' path, no gateway) is held to it too, the refusal crosses the
protocol as PolicyError with its rule, and the budget outlives the agent."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from botvault import Vault, agent
from botvault.errors import PolicyError
from botvault.grant_ops import add_grant
from botvault.grant_record import Grant
from botvault.trading_policy import Policy
from tests.agent_support import Keys, make_vault, running

ENTRIES = {
    "spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "full"},
    "fut": {"exchange": "kraken-futures", "general": "full", "withdrawal": "none"},
}
ADD, AMEND = "/0/private/AddOrder", "/0/private/AmendOrder"
ORDER = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "100",
         "volume": "1", "cl_ord_id": "c-1"}


@contextlib.contextmanager
def sign_only(keys: Keys, *, allow_withdrawal: bool = False) -> Iterator[None]:
    with running(keys, allow_withdrawal=allow_withdrawal, sign_only=True):
        yield


def _grant(keys: Keys, bot: str, entry: str, policy: Policy, withdrawal: str = "none"
           ) -> Grant:
    with Vault.open_with_key(keys.path, keys.data_key) as vault:
        return add_grant(vault, bot, entry=entry, general="full", withdrawal=withdrawal,
                         policy=policy)


def test_a_bot_at_the_agent_itself_is_held_to_its_policy(vault_path: Path) -> None:
    keys = make_vault(vault_path, ENTRIES)
    grant = _grant(keys, "bot", "spot", Policy(pairs=("XBTUSD",), max_order_notional=
                                               Decimal(150), max_daily_notional=Decimal(250)))
    with sign_only(keys), agent.connect() as client:
        signed = client.sign_with_grant(grant.api_key, grant.api_secret, ADD, ORDER)
        assert "volume=1" in signed.body
        with pytest.raises(PolicyError) as caught:
            client.sign_with_grant(grant.api_key, grant.api_secret, ADD,
                                   {**ORDER, "price": "200"})
        assert caught.value.rule == "order-notional"
        assert caught.value.message == "grant policy: notional 200 above 150"
        assert caught.value.exit_code == 6
        # The amend of an order the agent signed is judged against it (by cl_ord_id).
        client.sign_with_grant(grant.api_key, grant.api_secret, AMEND,
                               {"cl_ord_id": "c-1", "limit_price": "140"})
        with pytest.raises(PolicyError) as caught:
            client.sign_with_grant(grant.api_key, grant.api_secret, AMEND,
                                   {"cl_ord_id": "c-1", "order_qty": "2"})
        assert caught.value.rule == "order-notional"
        with pytest.raises(PolicyError) as caught:
            client.sign_with_grant(grant.api_key, grant.api_secret, AMEND,
                                   {"txid": "OUNKNOWN", "limit_price": "1"})
        assert caught.value.rule == "edit-unknown-order"
        # 100 + 40 (the amend's increase) spent; 120 more would be 260 > 250
        with pytest.raises(PolicyError) as caught:
            client.sign_with_grant(grant.api_key, grant.api_secret, ADD,
                                   {**ORDER, "price": "120"})
        assert caught.value.rule == "daily-notional"
    # A new agent (a restart) reads what was spent.
    with sign_only(keys), agent.connect() as client:
        with pytest.raises(PolicyError) as caught:
            client.sign_with_grant(grant.api_key, grant.api_secret, ADD,
                                   {**ORDER, "price": "120"})
        assert "spent today 140" in caught.value.message
        client.sign_with_grant(grant.api_key, grant.api_secret, ADD, {**ORDER, "price": "110"})


def test_withdrawals_under_a_policy(vault_path: Path) -> None:
    keys = make_vault(vault_path, ENTRIES)
    grant = _grant(keys, "payer", "spot", Policy(withdraw_keys=("cold",),
                                                 max_withdraw_amount=Decimal("0.5")),
                   withdrawal="full")
    path = "/0/private/Withdraw"
    with sign_only(keys, allow_withdrawal=True), agent.connect() as client:
        client.sign_with_grant(grant.api_key, grant.api_secret, path,
                               {"asset": "XBT", "key": "cold", "amount": "0.5"})
        for fields, rule in (({"key": "hot", "amount": "0.1"}, "withdraw-key"),
                             ({"key": "cold", "amount": "0.51"}, "withdraw-amount"),
                             ({"key": "cold", "amount": "5e-1"}, "unreadable")):
            with pytest.raises(PolicyError) as caught:
                client.sign_with_grant(grant.api_key, grant.api_secret, path,
                                       {"asset": "XBT", **fields})
            assert caught.value.rule == rule
        with pytest.raises(PolicyError) as caught:
            client.sign_with_grant(grant.api_key, grant.api_secret, "/0/private/AccountTransfer",
                                   {"asset": "XBT", "amount": "0.1", "from": "a", "to": "b"})
        assert caught.value.rule == "withdraw-key"

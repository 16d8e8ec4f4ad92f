"""The in-process integrations against a `--sign-only` agent: they take a grant, the agent
signs only what the grant authenticates, and the exchange sees the real key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from botvault import Vault, agent
from botvault.errors import InvalidInputError, ScopeError
from botvault.grant_ops import add_grant
from botvault.integrations.agent_signed import ccxt_exchange, kraken_sdk_client, krakenex_api
from botvault.integrations.ccxt_config import ccxt_agent_config
from tests.agent_support import PASSPHRASE, SPOT_AND_FUTURES, Keys, pubkey, running
from tests.kraken_server import StrictKraken

ccxt = pytest.importorskip("ccxt")
kraken_spot = pytest.importorskip("kraken.spot")
kraken_futures = pytest.importorskip("kraken.futures")
pytest.importorskip("krakenex")

ENTRIES = SPOT_AND_FUTURES
PUB = {name: pubkey(name) for name in ENTRIES}


@pytest.fixture
def grants(keys: Keys) -> dict[str, tuple[str, str]]:
    """bot -> (api key, api secret), as `botvault grant add` prints them."""
    made = {}
    with Vault.open(keys.path, PASSPHRASE) as v:
        for bot, entry, general in (("spot-bot", "spot", "full"), ("spot-reader", "spot",
                                                                   "read-only"),
                                    ("fut-bot", "fut", "full")):
            g = add_grant(v, bot, entry=entry, general=general, withdrawal="none")
            made[bot] = (g.api_key, g.api_secret.reveal())
    return made


@pytest.fixture
def server(keys: Keys) -> Iterator[StrictKraken]:
    with StrictKraken(enforce_rate=False) as kraken:
        for name, kw in ENTRIES.items():
            kraken.add_key(PUB[name], keys.secrets[name], kw["exchange"].removeprefix("kraken-"))
        yield kraken


@pytest.fixture
def client(keys: Keys) -> Iterator[agent.AgentClient]:
    with running(keys, sign_only=True), agent.connect() as c:
        assert c.status()["sign_only"] is True
        yield c


def _urls(server: StrictKraken, futures: bool = False) -> dict[str, Any]:
    base = server.url + ("/derivatives/api/" if futures else "")
    return {"urls": {"api": {"public": base, "private": base}}, "enableRateLimit": False}


def _no_secret(obj: Any, keys: Keys) -> None:
    seen = repr(vars(obj))
    for secret in keys.secrets.values():
        assert secret not in seen


def test_every_integration_signs_through_its_grant(client: agent.AgentClient, keys: Keys,
                                                   grants: dict[str, tuple[str, str]],
                                                   server: StrictKraken) -> None:
    spot, fut = grants["spot-bot"], grants["fut-bot"]
    exchange = ccxt_exchange(ccxt.kraken, "spot", client, grant=spot, **_urls(server))
    assert exchange.private_post_balance()["error"] == []
    config = ccxt.kraken(ccxt_agent_config(client, "spot", grant=spot, **_urls(server)))
    assert config.private_post_balance()["error"] == []
    futures = ccxt_exchange(ccxt.krakenfutures, "fut", client, grant=fut,
                            **_urls(server, True))
    assert futures.private_get_accounts()["result"] == "success"
    user = kraken_sdk_client(kraken_spot.User, "spot", client, grant=spot, url=server.url)
    assert "ZUSD" in user.get_account_balance()
    fuser = kraken_sdk_client(kraken_futures.User, "fut", client, grant=fut, url=server.url)
    assert fuser.get_wallets()["result"] == "success"
    api = krakenex_api("spot", client, grant=spot)
    api.uri = server.url
    assert api.query_private("Balance")["error"] == []
    api.close()
    # Every request reached the exchange signed with the real key, none refused.
    assert server.accepted() == 6 and server.rejected() == {}
    for made in (exchange, config, futures, user, fuser):
        _no_secret(made, keys)


def test_without_a_grant_a_sign_only_agent_signs_nothing(client: agent.AgentClient,
                                                         server: StrictKraken) -> None:
    exchange = ccxt_exchange(ccxt.kraken, "spot", client, **_urls(server))
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.private_post_balance()
    assert "sign-only" in str(caught.value) or "grant" in str(caught.value)
    assert server.accepted() == 0 and server.rejected() == {}


def test_a_grant_limits_what_the_integration_can_do(client: agent.AgentClient,
                                                    grants: dict[str, tuple[str, str]],
                                                    server: StrictKraken) -> None:
    reader = ccxt_exchange(ccxt.kraken, "spot", client, grant=grants["spot-reader"],
                           **_urls(server))
    assert reader.private_post_balance()["error"] == []
    with pytest.raises(ccxt.PermissionDenied) as caught:
        reader.private_post_addorder({"pair": "XBTUSD", "type": "buy", "ordertype": "limit",
                                      "price": "1000", "volume": "0.01"})
    assert isinstance(caught.value, ScopeError)
    assert server.accepted() == 1  # the refused order never reached the exchange


def test_a_grant_for_another_entry_or_product_is_refused(
        client: agent.AgentClient, grants: dict[str, tuple[str, str]]) -> None:
    with pytest.raises(InvalidInputError, match="the grant is for entry 'spot'"):
        krakenex_api("fut", client, grant=grants["spot-bot"])
    with pytest.raises(InvalidInputError, match="kraken-futures key"):
        kraken_sdk_client(kraken_spot.User, "fut", client, grant=grants["fut-bot"])

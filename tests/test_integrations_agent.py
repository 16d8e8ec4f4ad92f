"""Real ccxt and python-kraken-sdk clients signing through a real agent: no secret in the
client, and every request verifies with the secret the agent holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from botvault import agent
from botvault.errors import ScopeError
from botvault.exchanges.kraken import sign_futures, sign_spot
from botvault.integrations.agent_signed import ccxt_exchange, kraken_sdk_client
from tests.agent_support import Keys, make_vault, private_runtime_dir, running

ccxt = pytest.importorskip("ccxt")
kraken_spot = pytest.importorskip("kraken.spot")
kraken_futures = pytest.importorskip("kraken.futures")

ENTRIES = {
    "spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"},
    "spot-ro": {"exchange": "kraken-spot", "general": "read-only", "withdrawal": "none"},
    "fut": {"exchange": "kraken-futures", "general": "full", "withdrawal": "none"},
}


@pytest.fixture
def keys(vault_path: Path) -> Keys:
    private_runtime_dir()
    return make_vault(vault_path, ENTRIES)


@pytest.fixture
def client(keys: Keys) -> Iterator[agent.AgentClient]:
    with running(keys), agent.connect() as c:
        yield c


def _holds_no_secret(obj: Any, secrets: dict[str, str]) -> None:
    seen = repr(vars(obj)) + repr(getattr(obj, "secret", "")) + repr(getattr(obj, "_secret", ""))
    for secret in secrets.values():
        assert secret not in seen
        assert secret[:12] not in seen


def test_ccxt_kraken_spot(client: agent.AgentClient, keys: Keys) -> None:
    exchange = ccxt_exchange(ccxt.kraken, "spot", client)
    _holds_no_secret(exchange, keys.secrets)
    request = exchange.sign("AddOrder", ["private"], "POST",
                            {"pair": "XBTUSD", "type": "buy", "ordertype": "limit",
                             "price": "37500", "volume": "1.25"})
    nonce = int(parse_qs(request["body"])["nonce"][0])
    assert request["headers"]["API-Key"] == "PUBSPOTKEY"
    assert request["headers"]["API-Sign"] == sign_spot(
        keys.secrets["spot"], "/0/private/AddOrder", nonce, request["body"])
    assert "pair=XBTUSD" in request["body"]
    _holds_no_secret(exchange, keys.secrets)


def test_ccxt_read_only_key_cannot_trade(client: agent.AgentClient) -> None:
    exchange = ccxt_exchange(ccxt.kraken, "spot-ro", client)
    exchange.sign("Balance", ["private"], "POST", {})
    with pytest.raises(ScopeError):
        exchange.sign("AddOrder", ["private"], "POST", {"pair": "XBTUSD"})


def test_ccxt_krakenfutures(client: agent.AgentClient, keys: Keys) -> None:
    exchange = ccxt_exchange(ccxt.krakenfutures, "fut", client)
    _holds_no_secret(exchange, keys.secrets)
    request = exchange.sign("sendorder", ["private"], "POST",
                            {"orderType": "lmt", "symbol": "PF_XBTUSD", "side": "buy",
                             "size": 1, "limitPrice": 1000})
    url = urlsplit(request["url"])
    headers = request["headers"]
    assert headers["APIKey"] == "PUBFUTKEY"
    assert headers["Authent"] == sign_futures(keys.secrets["fut"], url.path,
                                              int(headers["Nonce"]), url.query)


def test_kraken_sdk_spot(client: agent.AgentClient, keys: Keys) -> None:
    user = kraken_sdk_client(kraken_spot.User, "spot", client)
    _holds_no_secret(user, keys.secrets)
    _, _, headers, body, _ = user._prepare_request(method="POST", uri="/0/private/Balance",
                                                    params={"asset": "XBT"})
    nonce = int(parse_qs(body)["nonce"][0])
    assert headers["API-Sign"] == sign_spot(keys.secrets["spot"], "/0/private/Balance",
                                            nonce, body)
    assert "asset=XBT" in body


def test_kraken_sdk_futures(client: agent.AgentClient, keys: Keys) -> None:
    user = kraken_sdk_client(kraken_futures.User, "fut", client)
    _holds_no_secret(user, keys.secrets)
    _, _, headers, payload, query = user._prepare_request(
        method="GET", uri="/derivatives/api/v3/openpositions", post_params=None,
        query_params={"x": "1"})
    assert headers["Authent"] == sign_futures(keys.secrets["fut"],
                                              "/derivatives/api/v3/openpositions",
                                              int(headers["Nonce"]), query + payload)

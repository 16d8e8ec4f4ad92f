"""Real ccxt and python-kraken-sdk clients sign with nonces from the vault's counter."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from botvault import Vault
from botvault.exchanges.kraken import sign_spot
from botvault.integrations import nonce_source
from botvault.integrations.kraken_sdk import spot_client, with_vault_nonces
from tests.conftest import PASSPHRASE, kraken_secret

ccxt = pytest.importorskip("ccxt")
kraken_spot = pytest.importorskip("kraken.spot")
kraken_futures = pytest.importorskip("kraken.futures")


@pytest.fixture
def spot(vault: Vault) -> Vault:
    vault.add("spot", exchange="kraken-spot", api_key="SPOTKEY", api_secret=kraken_secret(),
              general="full", withdrawal="none")
    return vault


def test_ccxt_kraken_signs_with_vault_nonces(spot: Vault, vault_path: Path) -> None:
    from botvault.integrations.ccxt_config import ccxt_config

    exchange = ccxt.kraken(ccxt_config(spot, "spot"))
    other = Vault.open(vault_path, PASSPHRASE)  # another user of the same counter
    for _ in range(3):
        before = other.next_nonce("spot")
        signed = exchange.sign("Balance", ["private"], "POST", {})
        nonce = int(parse_qs(signed["body"])["nonce"][0])
        assert nonce > before
        assert spot.peek_nonce("spot")[0] == nonce
        expected = sign_spot(spot.get("spot").api_secret, "/0/private/Balance", nonce,
                             signed["body"])
        assert signed["headers"]["API-Sign"] == expected


def test_kraken_sdk_spot_uses_vault_nonces(spot: Vault) -> None:
    client = spot_client(spot, "spot", kraken_spot.User)
    first = int(client.get_nonce())
    _, _, headers, params, _ = client._prepare_request(method="POST", uri="/0/private/Balance")
    assert int(params["nonce"]) > first
    assert spot.peek_nonce("spot")[0] == int(params["nonce"])
    body = "nonce=" + str(params["nonce"])
    assert headers["API-Sign"] == sign_spot(spot.get("spot").api_secret, "/0/private/Balance",
                                            int(params["nonce"]), body)


def test_kraken_sdk_futures_subclass(vault: Vault) -> None:
    vault.add("fut", exchange="kraken-futures", api_key="FUTKEY", api_secret=kraken_secret(),
              general="read-only", withdrawal="none")
    cls = with_vault_nonces(kraken_futures.User, nonce_source(vault, "fut"))
    entry = vault.get("fut")
    client = cls(key=entry.api_key, secret=entry.api_secret.reveal())
    _, _, headers, _, _ = client._prepare_request(
        method="GET", uri="/derivatives/api/v3/accounts", post_params=None, query_params=None)
    assert int(headers["Nonce"]) == vault.peek_nonce("fut")[0]


def test_vault_nonce_clients_through_their_public_request_paths(vault: Vault) -> None:
    from botvault.integrations.ccxt_config import ccxt_config
    from tests.kraken_server import StrictKraken

    secret = kraken_secret()
    vault.add("spot", exchange="kraken-spot", api_key="SPOTKEY", api_secret=secret,
              general="full", withdrawal="none")
    vault.add("fut", exchange="kraken-futures", api_key="FUTKEY", api_secret=secret,
              general="full", withdrawal="none")
    with StrictKraken(enforce_rate=False) as server:
        server.add_key("SPOTKEY", secret, "spot")
        server.add_key("FUTKEY", secret, "futures")
        urls: dict[str, Any] = {"urls": {"api": {"public": server.url, "private": server.url}}}
        exchange = ccxt.kraken(ccxt_config(vault, "spot", **urls))
        assert exchange.private_post_balance()["error"] == []  # through fetch2
        assert server.keys["SPOTKEY"].last_nonce == vault.peek_nonce("spot")[0]
        user = spot_client(vault, "spot", kraken_spot.User, url=server.url)
        assert user.get_account_balance()["ZUSD"] == "1000.0000"  # through request
        assert server.keys["SPOTKEY"].last_nonce == vault.peek_nonce("spot")[0]
        entry = vault.get("fut")
        fut = with_vault_nonces(kraken_futures.User, nonce_source(vault, "fut"))(
            key=entry.api_key, secret=entry.api_secret.reveal(), url=server.url)
        assert fut.get_wallets()["result"] == "success"
        assert server.keys["FUTKEY"].last_nonce == vault.peek_nonce("fut")[0]
        assert server.rejected() == {}

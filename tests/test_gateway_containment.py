"""What a grant-signed request can and cannot do at the gateway, with the real agent and the
strict stand-in (issue 17): a captured request is not sent twice, floods are refused before
the key's order, a revocation reaches requests already waiting, only signed bytes travel."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from botvault import Vault
from botvault.agent import socket_path_for
from botvault.exchanges.kraken import sign_futures, sign_spot
from botvault.gateway.agent_link import AsyncAgentGrants
from botvault.gateway.grants import GrantRefused, SignRequest
from botvault.grant_ops import revoke_grant
from botvault.nonces import key_id
from botvault.request_lock import KeyOrder

from .agent_support import PASSPHRASE
from .gateway_stack import Credential, Stack, gateway_stack, real_api_key
from .kraken_server import http_json

ADD = "/0/private/AddOrder"
ORDER = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "1000",
         "volume": "0.01"}


@pytest.fixture
def stack(vault_path: Path) -> Iterator[Stack]:
    with gateway_stack(vault_path, gateway_args=("--max-wait", "20")) as s:
        yield s


def _signed_spot(cred: Credential, path: str, nonce: int, **fields: str
                 ) -> tuple[str, dict[str, str]]:
    body = urlencode({"nonce": nonce, **fields})
    return body, {"API-Key": cred.api_key, "API-Sign": sign_spot(cred.api_secret, path,
                                                                 nonce, body),
                  "Content-Type": "application/x-www-form-urlencoded"}


def _ms() -> int:
    return time.time_ns() // 1_000_000


# -- replays (high) -------------------------------------------------------------------------

def test_a_captured_order_is_sent_once_however_often_it_is_replayed(stack: Stack) -> None:
    bot = stack.grant("bot", "spot")
    body, headers = _signed_spot(bot, ADD, _ms(), **ORDER)
    answers = [http_json(stack.url, "POST", ADD, body, headers)[1]["error"] for _ in range(6)]
    assert answers == [[]] + [["EAPI:Invalid nonce"]] * 5
    assert stack.kraken.paths[ADD] == 1


def test_a_nonce_outside_the_window_is_refused_whatever_its_unit(stack: Stack) -> None:
    bot = stack.grant("bot", "spot")
    old_ms = _ms() - 60_000
    for nonce in (old_ms, old_ms * 100_000, 5, _ms() + 60_000):  # ms, 10 ns, counter, future
        body, headers = _signed_spot(bot, ADD, nonce, **ORDER)
        assert http_json(stack.url, "POST", ADD, body, headers)[1]["error"] == [
            "EAPI:Invalid nonce"]
    for nonce in (_ms(), time.time_ns() // 10, time.time_ns() // 1000):  # ms, 10 ns, us
        body, headers = _signed_spot(bot, ADD, nonce, **ORDER)
        assert http_json(stack.url, "POST", ADD, body, headers)[1]["error"] == []
    assert stack.kraken.paths[ADD] == 3


@pytest.mark.slow
def test_a_ccxt_bot_in_ms_on_a_key_counting_in_10ns(vault_path: Path) -> None:
    ccxt = pytest.importorskip("ccxt")
    entries = {"spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none",
                        "nonce_unit": "10ns"}}
    with gateway_stack(vault_path, entries=entries) as stack:
        bot = stack.grant("bot", "spot")
        exchange = ccxt.kraken({"apiKey": bot.api_key, "secret": bot.api_secret,
                                "urls": {"api": {"public": stack.url, "private": stack.url}}})
        for _ in range(3):
            assert exchange.private_post_balance()["error"] == []
        # The key's own nonces went out in 10 ns ticks, the bot's were milliseconds.
        assert stack.kraken.accepted() == 3 and stack.kraken.rejected() == {}
        with Vault.open_with_key(stack.keys.path, stack.keys.data_key) as vault:
            last = vault.peek_nonce("spot")[0]
            assert last is not None and last > time.time_ns() // 10 - 10**10


def test_futures_without_a_nonce_keep_working_by_default(stack: Stack) -> None:
    fut = stack.grant("fbot", "fut")
    path = "/derivatives/api/v3/openpositions"
    headers = {"APIKey": fut.api_key, "Authent": sign_futures(fut.api_secret, path, "", "")}
    # As at Kraken itself, a request without a nonce can be sent again (SECURITY.md).
    assert [http_json(stack.url, "GET", path, b"", headers)[1]["result"]
            for _ in range(2)] == ["success"] * 2


def test_a_grant_can_require_a_nonce_on_every_request(stack: Stack, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from botvault.cli.main import app

    secret = tmp_path / "pass"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    added = CliRunner().invoke(app, [
        "grant", "add", "strict", "--key", "fut", "--general", "full", "--withdrawal", "none",
        "--require-nonce", "--json", "--vault", str(stack.keys.path), "--passphrase-file",
        str(secret)])
    assert added.exit_code == 0, added.output
    import json

    pair = json.loads(added.stdout.strip().splitlines()[-1])
    path = "/derivatives/api/v3/openpositions"
    bare = {"APIKey": pair["api_key"], "Authent": sign_futures(pair["api_secret"], path, "",
                                                                 "")}
    assert http_json(stack.url, "GET", path, b"", bare)[1]["error"] == "nonceBelowThreshold"
    nonce = str(_ms())
    signed = {"APIKey": pair["api_key"], "Nonce": nonce,
              "Authent": sign_futures(pair["api_secret"], path, nonce, "")}
    assert http_json(stack.url, "GET", path, b"", signed)[1]["result"] == "success"


# -- floods (medium): cheap refusals before the key's order ------------------------------

def test_a_badly_signed_request_is_refused_without_waiting_for_the_keys_order(
        stack: Stack) -> None:
    bot = stack.grant("bot", "spot")
    forged = Credential(bot.api_key, stack.real("spot").api_secret)
    order = KeyOrder.for_key_id(stack.keys.path, key_id("kraken-spot", real_api_key("spot")))
    with order.hold(timeout=5):  # the key is busy (another bot's request, say) for a while
        body, headers = _signed_spot(forged, "/0/private/Balance", _ms())
        status, doc = http_json(stack.url, "POST", "/0/private/Balance", body, headers)
        # Answered at once for what it is, not queued behind the key's order until the
        # wait bound (--max-wait 20) turns it into a rate-limit refusal.
        assert (status, doc["error"]) == (200, ["EAPI:Invalid signature"])
    assert stack.kraken.accepted() == 0


def test_unknown_grant_ids_cost_no_round_trip_to_the_agent(stack: Stack) -> None:
    stack.grant("bot", "spot")
    grants = AsyncAgentGrants(socket_path_for(stack.keys.path), vault_path=stack.keys.path)

    def request(grant_key: str) -> SignRequest:
        return SignRequest(grant_key, "/0/private/Balance", "POST", "nonce=1", "c2ln", "",
                           "form")

    async def flood() -> tuple[int, list[str]]:
        refused = []
        for _ in range(200):
            try:
                await grants.verify(request("bvg_" + os.urandom(39).hex()[:52]),
                                    exchange="kraken-spot", window=10, hold=60)
            except GrantRefused as exc:
                refused.append(exc.reason.value)
        calls = grants.calls
        added = stack.grant("new-bot", "spot")  # saved: the list is read again
        with pytest.raises(GrantRefused) as caught:
            await grants.verify(request(added.api_key), exchange="kraken-spot", window=10,
                                hold=60)
        grants.close()
        return calls, [*refused, caught.value.reason.value]

    calls, reasons = asyncio.run(flood())
    assert calls == 1  # the list of grants, once
    assert reasons == ["invalid-key"] * 200 + ["invalid-signature"]  # the new one is known


# -- revoke means now (low) --------------------------------------------------------------

def test_a_request_waiting_when_revoke_returns_is_refused(stack: Stack) -> None:
    bot = stack.grant("bot", "spot")
    order = KeyOrder.for_key_id(stack.keys.path, key_id("kraken-spot", real_api_key("spot")))
    answers: list[Any] = []
    with order.hold(timeout=5):
        body, headers = _signed_spot(bot, ADD, _ms(), **ORDER)
        sender = threading.Thread(target=lambda: answers.append(
            http_json(stack.url, "POST", ADD, body, headers)))
        sender.start()
        time.sleep(0.5)  # checked by the agent, now waiting for the key's order
        with Vault.open_with_key(stack.keys.path, stack.keys.data_key) as vault:
            revoke_grant(vault, "bot")
    sender.join(30)
    assert answers[0][1]["error"] == ["EAPI:Invalid key"]
    assert stack.kraken.paths[ADD] == 0


@pytest.mark.slow
def test_a_request_waiting_for_the_rate_limit_when_revoke_returns_is_refused(
        vault_path: Path) -> None:
    with gateway_stack(vault_path, tier="starter", gateway_args=("--max-wait", "20")) as stack:
        bot = stack.grant("bot", "spot")
        balance = "/0/private/Balance"
        for _ in range(15):  # a Starter key's whole counter
            body, headers = _signed_spot(bot, balance, _ms())
            assert http_json(stack.url, "POST", balance, body, headers)[1]["error"] == []
        answers: list[Any] = []
        body, headers = _signed_spot(bot, balance, _ms())
        sender = threading.Thread(target=lambda: answers.append(
            http_json(stack.url, "POST", balance, body, headers)))
        sender.start()
        time.sleep(0.5)  # signed by the bot, checked, now waiting for the counter to decay
        with Vault.open_with_key(stack.keys.path, stack.keys.data_key) as vault:
            revoke_grant(vault, "bot")
        sender.join(30)
        assert answers[0][1]["error"] == ["EAPI:Invalid key"]
        assert stack.kraken.paths[balance] == 15


# -- only signed bytes travel (low) ------------------------------------------------------

def test_a_query_string_the_signature_does_not_cover_is_refused(stack: Stack) -> None:
    bot, fut = stack.grant("bot", "spot"), stack.grant("fbot", "fut")
    body, headers = _signed_spot(bot, ADD, _ms(), **ORDER)
    status, doc = http_json(stack.url, "POST", ADD + "?volume=100", body, headers)
    assert (status, doc["error"]) == (400, ["EGeneral:Invalid arguments"])
    path = "/derivatives/api/v3/sendorder"
    data = "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=1&limitPrice=1000"
    nonce = str(_ms())
    headers = {"APIKey": fut.api_key, "Nonce": nonce, "Authent": sign_futures(
        fut.api_secret, path, nonce, data), "Content-Type": "application/x-www-form-urlencoded"}
    # Futures signs the query string followed by the body: an added query breaks it.
    status, doc = http_json(stack.url, "POST", path + "?size=100", data, headers)
    assert (status, doc["error"]) == (200, "authenticationError")
    get = "/derivatives/api/v3/openpositions"
    headers = {"APIKey": fut.api_key, "Authent": sign_futures(fut.api_secret, get, "", "")}
    status, doc = http_json(stack.url, "GET", get, "unsigned=1", headers)  # a GET's body
    assert (status, doc["error"]) == (200, "authenticationError")
    assert stack.kraken.accepted() == 0

"""Real ccxt, python-kraken-sdk and krakenex clients signing through a real agent, driven
through each client's public request path (ccxt's implicit API -> fetch2, the SDK's methods ->
request, krakenex's query_private) against a strict local Kraken that verifies every signature
with the secret only the agent holds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from botvault import agent
from botvault.errors import InvalidInputError, LockedError, NotFoundError, ScopeError
from botvault.integrations.agent_signed import ccxt_exchange, kraken_sdk_client, krakenex_api
from botvault.nonces import key_id
from botvault.request_lock import KeyOrder, RequestLockTimeout
from tests.agent_support import Keys, pubkey, running
from tests.kraken_server import StrictKraken

ccxt = pytest.importorskip("ccxt")
accxt = pytest.importorskip("ccxt.async_support")
kraken_spot = pytest.importorskip("kraken.spot")
kraken_futures = pytest.importorskip("kraken.futures")
kraken_base = pytest.importorskip("kraken.base_api")
kraken_exceptions = pytest.importorskip("kraken.exceptions")
krakenex = pytest.importorskip("krakenex")

ENTRIES = {
    "spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"},
    "spot-ro": {"exchange": "kraken-spot", "general": "read-only", "withdrawal": "none"},
    "fut": {"exchange": "kraken-futures", "general": "full", "withdrawal": "none"},
    "fut-ro": {"exchange": "kraken-futures", "general": "read-only", "withdrawal": "none"},
}
PUB = {name: pubkey(name) for name in ENTRIES}
ORDER = {"pair": "XXBTZUSD", "type": "buy", "ordertype": "limit", "price": "1000",
         "volume": "0.01"}


@pytest.fixture
def server(keys: Keys) -> Iterator[StrictKraken]:
    with StrictKraken(enforce_rate=False) as kraken:
        for name, kw in ENTRIES.items():
            kraken.add_key(PUB[name], keys.secrets[name], kw["exchange"].removeprefix("kraken-"),
                           general=kw["general"])
        yield kraken


def _urls(server: StrictKraken, futures: bool = False) -> dict[str, Any]:
    base = server.url + ("/derivatives/api/" if futures else "")
    return {"urls": {"api": {"public": base, "private": base}}, "enableRateLimit": False}


def _holds_no_secret(obj: Any, secrets: dict[str, str]) -> None:
    seen = repr(vars(obj)) + repr(getattr(obj, "secret", "")) + repr(getattr(obj, "_secret", ""))
    for secret in secrets.values():
        assert secret not in seen
        assert secret[:12] not in seen


def _order_is_free(order: KeyOrder) -> bool:
    """True when another thread can take the key's order at once (nothing left it held)."""
    result: list[bool] = []

    def take() -> None:
        try:
            with order.hold(timeout=0.05):
                result.append(True)
        except RequestLockTimeout:
            result.append(False)

    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    return result == [True]


# -- ccxt -----------------------------------------------------------------------------------


def test_ccxt_kraken_through_fetch2(client: agent.AgentClient, keys: Keys,
                                    server: StrictKraken) -> None:
    exchange = ccxt_exchange(ccxt.kraken, "spot", client, **_urls(server))
    _holds_no_secret(exchange, keys.secrets)
    assert exchange.private_post_addorder(ORDER)["error"] == []
    assert exchange.private_post_balance()["result"]["XXBT"] == "1.0000000000"
    assert server.accepted() == 2 and server.rejected() == {}
    _holds_no_secret(exchange, keys.secrets)


def test_ccxt_krakenfutures_through_fetch2(client: agent.AgentClient, keys: Keys,
                                           server: StrictKraken) -> None:
    exchange = ccxt_exchange(ccxt.krakenfutures, "fut", client, **_urls(server, True))
    _holds_no_secret(exchange, keys.secrets)
    assert exchange.private_get_accounts()["result"] == "success"
    assert exchange.private_post_sendorder({"orderType": "lmt", "symbol": "PF_XBTUSD",
                                            "side": "buy", "size": 1, "limitPrice": 1000}
                                           )["result"] == "success"
    assert server.accepted() == 2 and server.rejected() == {}


def _five_per_key_at_once(server: StrictKraken, clients: Callable[[], tuple[Any, Any]],
                          spot_call: Callable[[Any], Awaitable[Any]],
                          fut_call: Callable[[Any], Awaitable[Any]]) -> None:
    """Five requests per key at once (async clients made in the loop): every one accepted,
    never two of one key in flight."""
    async def main() -> None:
        spot, fut = clients()
        try:
            await asyncio.gather(*(spot_call(spot) for _ in range(5)),
                                 *(fut_call(fut) for _ in range(5)))
        finally:
            await spot.close()
            await fut.close()

    asyncio.run(main())
    assert server.accepted() == 10 and server.rejected() == {}
    assert server.max_in_flight(PUB["spot"]) == 1 and server.max_in_flight(PUB["fut"]) == 1


def test_ccxt_async_through_fetch2(client: agent.AgentClient, server: StrictKraken) -> None:
    _five_per_key_at_once(
        server, lambda: (ccxt_exchange(accxt.kraken, "spot", client, **_urls(server)),
                         ccxt_exchange(accxt.krakenfutures, "fut", client, **_urls(server, True))),
        lambda spot: spot.private_post_balance(), lambda fut: fut.private_get_accounts())


def test_ccxt_refused_scope_is_ccxt_permission_denied_and_releases_the_order(
        client: agent.AgentClient, server: StrictKraken) -> None:
    exchange = ccxt_exchange(ccxt.kraken, "spot-ro", client, **_urls(server))
    with pytest.raises(ccxt.PermissionDenied) as caught:
        exchange.private_post_addorder(ORDER)
    assert isinstance(caught.value, ccxt.AuthenticationError)
    assert isinstance(caught.value, ScopeError)  # and still botvault's, with its message
    assert "read-only" in str(caught.value) or "scope" in str(caught.value).lower()
    assert sum(server.outcomes.values()) == 0  # refused before anything was sent
    assert _order_is_free(client.key_order("spot-ro"))
    assert exchange.private_post_balance()["error"] == []  # reading is allowed


def test_ccxt_locked_vault_is_ccxt_authentication_error(keys: Keys,
                                                        server: StrictKraken) -> None:
    with running(keys), agent.connect() as client:
        exchange = ccxt_exchange(ccxt.kraken, "spot", client, **_urls(server))
        order = client.key_order("spot")
        client.lock()
    with pytest.raises(ccxt.AuthenticationError) as caught:
        exchange.private_post_balance()
    assert isinstance(caught.value, LockedError)
    assert "locked" in str(caught.value)
    assert _order_is_free(order)


def test_ccxt_waits_for_the_order_and_times_out_as_ccxt_request_timeout(
        client: agent.AgentClient, server: StrictKraken) -> None:
    exchange = ccxt_exchange(ccxt.kraken, "spot", client, order_timeout=0.2, **_urls(server))
    # request_lock (the bot's own, documented) and the integration share one order: held by
    # another thread, the integration waits and gives up as ccxt's RequestTimeout ...
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with agent.connect() as other, other.request_lock("spot"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(ccxt.RequestTimeout) as caught:
            exchange.private_post_balance()
    finally:
        release.set()
        thread.join()
    assert isinstance(caught.value, RequestLockTimeout)
    assert "held it for more than 0.2 s" in str(caught.value)
    assert sum(server.outcomes.values()) == 0
    assert exchange.private_post_balance()["error"] == []
    # ... and held by this very thread, a request inside it is refused, not deadlocked.
    with client.request_lock("spot"), pytest.raises(ccxt.ExchangeError,
                                                    match="already holds"):
        exchange.private_post_balance()
    assert server.accepted() == 1


def test_ccxt_http_timeout_releases_the_order(client: agent.AgentClient,
                                              server: StrictKraken) -> None:
    server.latency = 1.0
    exchange = ccxt_exchange(ccxt.kraken, "spot", client, timeout=200, **_urls(server))
    with pytest.raises(ccxt.RequestTimeout):
        exchange.private_post_balance()
    assert _order_is_free(client.key_order("spot"))


def test_ccxt_async_cancellation_releases_the_order(client: agent.AgentClient,
                                                    server: StrictKraken) -> None:
    server.latency = 0.5
    order = client.key_order("spot")

    async def main() -> None:
        exchange = ccxt_exchange(accxt.kraken, "spot", client, **_urls(server))
        try:
            task = asyncio.ensure_future(exchange.private_post_balance())
            while server.keys[PUB["spot"]].in_flight == 0:  # the request is on the wire
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with order.hold_async(timeout=0.05):  # free again, in this very loop
                pass
        finally:
            await exchange.close()

    asyncio.run(main())
    assert _order_is_free(order)


def test_ccxt_refuses_entry_and_client_mismatch(client: agent.AgentClient) -> None:
    with pytest.raises(ccxt.BadRequest, match="kraken-futures key") as caught:
        ccxt_exchange(ccxt.kraken, "fut", client)
    assert isinstance(caught.value, InvalidInputError)
    with pytest.raises(ccxt.BadRequest, match="kraken-spot key"):
        ccxt_exchange(accxt.krakenfutures, "spot", client)
    with pytest.raises(ccxt.BadRequest, match="not a Kraken exchange"):
        ccxt_exchange(ccxt.binance, "spot", client)
    with pytest.raises(ccxt.BadRequest, match="not a Kraken exchange"):
        ccxt_exchange(ccxt.kraken(), "spot", client)  # an object, not the class
    with pytest.raises(ccxt.BadRequest, match="secret stays in the agent"):
        ccxt_exchange(ccxt.kraken, "spot", client, secret="c2VjcmV0")
    with pytest.raises(ccxt.AuthenticationError) as missing:
        ccxt_exchange(ccxt.kraken, "nope", client)
    assert isinstance(missing.value, NotFoundError)


def test_ccxt_subclass_of_the_returned_class_works(client: agent.AgentClient, keys: Keys,
                                                    server: StrictKraken) -> None:
    exchange = ccxt_exchange(ccxt.kraken, "spot", client, **_urls(server))
    calls: list[str] = []

    class Mine(type(exchange)):  # type: ignore[misc] # a ccxt class, untyped
        def sign(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(args[0])
            return super().sign(*args, **kwargs)

    mine = Mine({"apiKey": exchange.apiKey, **_urls(server)})
    assert mine.private_post_balance()["error"] == []
    grandchild = type("Grandchild", (Mine,), {})({"apiKey": exchange.apiKey, **_urls(server)})
    assert grandchild.private_post_balance()["error"] == []
    assert calls == ["Balance", "Balance"]
    assert server.accepted() == 2 and server.rejected() == {}
    _holds_no_secret(mine, keys.secrets)


def test_ccxt_agent_config_holds_no_secret_and_no_passphrase(
        client: agent.AgentClient, keys: Keys, server: StrictKraken) -> None:
    from botvault.integrations.ccxt_config import ccxt_agent_config
    from botvault.integrations.ccxt_session import PLACEHOLDER_SECRET

    config = ccxt_agent_config(client, "spot", **_urls(server))
    exchange = ccxt.kraken(config)
    assert exchange.private_post_balance()["error"] == []
    before = client.next_nonce("spot")  # the agent's counter is the one in use
    assert exchange.private_post_balance()["error"] == []
    assert server.keys[PUB["spot"]].last_nonce > before
    assert server.accepted() == 2 and server.rejected() == {}  # signed with the real key
    assert exchange.secret == PLACEHOLDER_SECRET
    _holds_no_secret(exchange, keys.secrets)
    for secret in keys.secrets.values():
        assert secret not in repr(config)
    futures = ccxt.krakenfutures(ccxt_agent_config(client, "fut", **_urls(server, True)))
    assert futures.private_get_accounts()["result"] == "success"
    _holds_no_secret(futures, keys.secrets)


def test_ccxt_agent_config_refusals_are_ccxt_errors_and_never_sent(
        client: agent.AgentClient, server: StrictKraken) -> None:
    from botvault.integrations.ccxt_config import ccxt_agent_config

    reader = ccxt.kraken(ccxt_agent_config(client, "spot-ro", **_urls(server)))
    with pytest.raises(ccxt.PermissionDenied):
        reader.private_post_addorder({"pair": "XBTUSD", "type": "buy", "ordertype": "limit",
                                      "price": "1000", "volume": "0.01"})
    assert server.accepted() == 0 and server.rejected() == {}  # nothing reached the exchange
    # The order was released: the next request on the key goes out at once.
    assert reader.private_post_balance()["error"] == []


# -- python-kraken-sdk ----------------------------------------------------------------------


def test_sdk_spot_and_futures_through_request(client: agent.AgentClient, keys: Keys,
                                              server: StrictKraken) -> None:
    user = kraken_sdk_client(kraken_spot.User, "spot", client, url=server.url)
    trade = kraken_sdk_client(kraken_spot.Trade, "spot", client, url=server.url)
    fut = kraken_sdk_client(kraken_futures.User, "fut", client, url=server.url)
    for made in (user, trade, fut):
        _holds_no_secret(made, keys.secrets)
    assert user.get_account_balance()["XXBT"] == "1.0000000000"
    assert "txid" in trade.create_order(ordertype="limit", side="buy", volume="0.01",
                                        pair="XBTUSD", price="1000", validate=False)
    assert fut.get_wallets()["result"] == "success"
    assert server.accepted() == 3 and server.rejected() == {}


def test_sdk_async_through_request(client: agent.AgentClient, server: StrictKraken) -> None:
    _five_per_key_at_once(
        server, lambda: (
            kraken_sdk_client(kraken_base.SpotAsyncClient, "spot", client, url=server.url),
            kraken_sdk_client(kraken_base.FuturesAsyncClient, "fut", client, url=server.url)),
        lambda spot: spot.request("POST", "/0/private/Balance"),
        lambda fut: fut.request("GET", "/derivatives/api/v3/accounts"))


def test_sdk_async_cancellation_and_sync_errors_release_the_order(
        client: agent.AgentClient, server: StrictKraken) -> None:
    server.latency = 0.5
    order = client.key_order("fut")

    async def main() -> None:
        fut = kraken_sdk_client(kraken_base.FuturesAsyncClient, "fut", client, url=server.url)
        try:
            task = asyncio.ensure_future(fut.request("GET", "/derivatives/api/v3/accounts"))
            while server.keys[PUB["fut"]].in_flight == 0:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with order.hold_async(timeout=0.05):
                pass
        finally:
            await fut.close()

    asyncio.run(main())
    assert _order_is_free(order)
    server.latency = 0.0
    user = kraken_sdk_client(kraken_futures.User, "fut", client, url=server.url)
    user.TIMEOUT = 1
    server.stop()  # the exchange is gone: the request fails, the order is released
    import requests

    with pytest.raises(requests.ConnectionError):
        user.get_wallets()
    assert _order_is_free(order)


def test_sdk_refused_scope_is_the_sdks_permission_denied(client: agent.AgentClient,
                                                         server: StrictKraken) -> None:
    trade = kraken_sdk_client(kraken_spot.Trade, "spot-ro", client, url=server.url)
    with pytest.raises(kraken_exceptions.KrakenPermissionDeniedError) as caught:
        trade.create_order(ordertype="limit", side="buy", volume="0.01", pair="XBTUSD",
                           price="1000")
    assert isinstance(caught.value, ScopeError)
    assert str(caught.value) == caught.value.message  # botvault's message, not a docstring
    fut = kraken_sdk_client(kraken_futures.Trade, "fut-ro", client, url=server.url)
    with pytest.raises(kraken_exceptions.KrakenPermissionDeniedError):
        fut.create_order(orderType="lmt", side="buy", size=1, symbol="PF_XBTUSD",
                         limitPrice=1000)
    assert sum(server.outcomes.values()) == 0
    assert _order_is_free(client.key_order("spot-ro"))
    assert _order_is_free(client.key_order("fut-ro"))


def test_sdk_refuses_mismatch_and_secrets(client: agent.AgentClient) -> None:
    with pytest.raises(InvalidInputError, match="kraken-futures key"):
        kraken_sdk_client(kraken_spot.User, "fut", client)
    with pytest.raises(InvalidInputError, match="kraken-spot key"):
        kraken_sdk_client(kraken_base.FuturesAsyncClient, "spot", client)
    with pytest.raises(InvalidInputError, match="not a python-kraken-sdk client"):
        kraken_sdk_client(dict, "spot", client)
    with pytest.raises(InvalidInputError, match="is not a python-kraken-sdk client class"):
        kraken_sdk_client(kraken_spot.User(), "spot", client)
    with pytest.raises(InvalidInputError, match="secret stays in the agent"):
        kraken_sdk_client(kraken_spot.User, "spot", client, secret="x")


def test_sdk_subclass_and_placeholder_never_signs(client: agent.AgentClient,
                                                  server: StrictKraken) -> None:
    user = kraken_sdk_client(kraken_spot.User, "spot", client, url=server.url)
    sub = type("Sub", (type(user),), {})(key=user._key, secret=user._secret, url=server.url)
    assert sub.get_account_balance()["ZUSD"] == "1000.0000"
    with pytest.raises(InvalidInputError, match="secret is in the agent"):
        sub._get_kraken_signature("/0/private/Balance", "nonce=1", 1)


# -- krakenex -------------------------------------------------------------------------------


def test_krakenex_through_query_private(client: agent.AgentClient, keys: Keys,
                                        server: StrictKraken) -> None:
    api = krakenex_api("spot", client)
    api.uri = server.url
    _holds_no_secret(api, keys.secrets)
    assert api.query_private("AddOrder", dict(ORDER))["error"] == []
    assert api.query_private("Balance")["result"]["ZUSD"] == "1000.0000"
    assert server.accepted() == 2 and server.rejected() == {}
    ro = krakenex_api("spot-ro", client)
    ro.uri = server.url
    with pytest.raises(ScopeError):
        ro.query_private("AddOrder", dict(ORDER))
    assert _order_is_free(client.key_order("spot-ro"))
    with pytest.raises(InvalidInputError, match="kraken-futures key"):
        krakenex_api("fut", client)
    api.close()


# -- one order per real key ---------------------------------------------------------------


def test_order_is_keyed_by_exchange_and_api_key_not_name(keys: Keys) -> None:
    from botvault import Vault
    from tests.agent_support import PASSPHRASE

    with running(keys), agent.connect() as client:
        one = client.key_order("spot")
        # One key, one entry: a second name for a key is refused, so the name that can
        # change is the entry's own. The order stays with the key through a rename.
        with Vault.open(keys.path, PASSPHRASE) as v:
            v.rename("spot", "spot-alias")
        two = client.key_order("spot-alias")
        assert one.key_id == two.key_id == key_id("kraken-spot", PUB["spot"])
        assert one.path == two.path
        with client.request_lock("spot-alias"):
            assert not _order_is_free(one)
            errors: list[BaseException] = []

            def second() -> None:
                try:  # keyed by exchange and api key, whatever the entry is called
                    with KeyOrder(keys.path, "kraken-spot", PUB["spot"]).hold(timeout=0.1):
                        pass
                except RequestLockTimeout as exc:
                    errors.append(exc)

            thread = threading.Thread(target=second)
            thread.start()
            thread.join()
            assert len(errors) == 1 and "0.1 s" in str(errors[0])
        assert client.key_order("fut").key_id != one.key_id

"""Must-hold 5: python-kraken-sdk's websocket clients, built by `kraken_sdk_client`, are
authenticated through the agent: the Spot client's token comes from GetWebSocketsToken signed
by the agent (checked by the REST stand-in), the Futures challenge is signed by the agent
(checked by the websocket stand-in). Everything goes through the SDK's own message building."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from botvault import agent
from botvault.integrations.agent_signed import kraken_sdk_client
from tests.agent_support import SPOT_AND_FUTURES, Keys
from tests.kraken_server import StrictKraken, _spot_result
from tests.kraken_ws_server import KrakenWS

kraken_spot = pytest.importorskip("kraken.spot")
kraken_futures = pytest.importorskip("kraken.futures")
pytest.importorskip("websockets")

ENTRIES = SPOT_AND_FUTURES


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A certificate for 127.0.0.1 that this test's clients trust (via SSL_CERT_FILE): the
    SDK's Futures websocket client always connects with wss:// and default verification."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async def wait() -> None:
        while not check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), timeout)


async def _close(bot: Any, ws: KrakenWS) -> None:
    closing = asyncio.ensure_future(bot.close())
    while not closing.done():
        await ws.nudge()
        await asyncio.sleep(0.05)
    await closing


def test_spot_websocket_token_comes_through_the_agent(client: agent.AgentClient,
                                                      keys: Keys) -> None:
    token = _spot_result("GetWebSocketsToken")["token"]
    messages: list[dict[str, Any]] = []

    async def on_message(message: dict[str, Any]) -> None:
        messages.append(message)

    async def main(rest: StrictKraken) -> None:
        async with KrakenWS(token=token) as ws:
            url = f"ws://127.0.0.1:{ws.port}"
            bot = kraken_sdk_client(kraken_spot.SpotWSClient, "spot", client,
                                    callback=on_message, no_public=True, rest_url=rest.url,
                                    ws_url=url, auth_ws_url=url)
            try:
                await bot.start()
                await bot.subscribe(params={"channel": "executions"})
                await _until(lambda: any(m.get("method") == "subscribe" for m in messages))
            finally:
                await _close(bot, ws)
            sent = [m for m in ws.received if m.get("method") == "subscribe"]
            assert sent[0]["params"] == {"channel": "executions", "token": token}

    with StrictKraken(enforce_rate=False) as rest:
        rest.add_key("PUBSPOTKEY", keys.secrets["spot"], "spot")
        asyncio.run(main(rest))
        # The token request reached the exchange signed with the secret only the agent has.
        assert rest.paths["/0/private/GetWebSocketsToken"] == 1
        assert rest.accepted() == 1 and rest.rejected() == {}
    answer = next(m for m in messages if m.get("method") == "subscribe")
    assert answer["success"] is True


def test_futures_websocket_challenge_is_signed_by_the_agent(client: agent.AgentClient,
                                                            keys: Keys,
                                                            tls: ssl.SSLContext) -> None:
    messages: list[dict[str, Any]] = []

    async def on_message(message: dict[str, Any]) -> None:
        messages.append(message)

    async def main() -> None:
        async with KrakenWS(futures_keys={"PUBFUTKEY": keys.secrets["fut"]},
                            ssl_context=tls) as ws:
            bot = kraken_sdk_client(kraken_futures.FuturesWSClient, "fut", client,
                                    url=f"127.0.0.1:{ws.port}", callback=on_message)
            assert bot.is_auth  # a property: the SDK believes it is authenticated
            try:
                await bot.start()
                await bot.subscribe(feed="open_orders")
                await _until(lambda: any(m.get("event") in ("subscribed", "error")
                                         for m in messages))
            finally:
                await _close(bot, ws)
            sent = [m for m in ws.received if m.get("event") == "subscribe"]
            assert sent[0]["api_key"] == "PUBFUTKEY"
            assert sent[0]["original_challenge"] == ws.challenges["PUBFUTKEY"]

    asyncio.run(main())
    assert {"event": "subscribed", "feed": "open_orders"} in messages


def test_futures_websocket_refuses_a_spot_entry(client: agent.AgentClient) -> None:
    from botvault.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="kraken-spot key"):
        kraken_sdk_client(kraken_futures.FuturesWSClient, "spot", client)

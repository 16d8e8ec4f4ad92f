"""The gateway behaves the same on asyncio's event loop and on uvloop (the `speedups` extra).

uvloop is the default when installed; `BOTVAULT_GATEWAY_LOOP=asyncio` picks asyncio's loop.
Both run the real gateway against the real agent and the strict stand-in here.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from botvault.exchanges.kraken import sign_futures, sign_spot
from botvault.gateway import event_loop

from .gateway_stack import gateway_stack
from .kraken_server import http_json


def test_the_loop_is_uvloop_unless_asyncio_is_asked_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.delenv("BOTVAULT_GATEWAY_LOOP", raising=False)
    assert event_loop.loop_factory() is uvloop.new_event_loop
    assert event_loop.run(_loop_name()) == "uvloop"
    monkeypatch.setenv("BOTVAULT_GATEWAY_LOOP", "asyncio")
    assert event_loop.loop_factory() is None
    assert event_loop.run(_loop_name()) == "asyncio"


async def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_gateway_serves_alike_on_either_loop(vault_path: Path, loop: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv("BOTVAULT_GATEWAY_LOOP", loop)
    with gateway_stack(vault_path) as stack:
        bot, fut = stack.grant("bot", "spot"), stack.grant("fbot", "fut")
        path = "/0/private/Balance"
        for _ in range(3):
            nonce = time.time_ns() // 1000
            body = urlencode({"nonce": nonce})
            status, doc = http_json(stack.url, "POST", path, body, {
                "API-Key": bot.api_key, "API-Sign": sign_spot(bot.api_secret, path, nonce, body),
                "Content-Type": "application/x-www-form-urlencoded"})
            assert (status, doc["error"]) == (200, [])
        path = "/derivatives/api/v3/openorders"
        nonce_text = str(time.time_ns() // 1000)
        status, doc = http_json(stack.url, "GET", path, headers={
            "APIKey": fut.api_key, "Nonce": nonce_text,
            "Authent": sign_futures(fut.api_secret, path, nonce_text, "")})
        assert (status, doc["result"]) == (200, "success")
        assert stack.kraken.accepted() == 4 and stack.kraken.rejected() == {}

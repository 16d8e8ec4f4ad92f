"""One agent round trip instead of two while a key's turn is free (issue 22; one_step.py),
and every refusal of the two steps kept on it. The real agent and the strict stand-in; the
gateway in this process so that its round trips to the agent can be counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from botvault import Vault
from botvault.agent import socket_path_for
from botvault.exchanges.kraken import sign_futures, sign_spot
from botvault.gateway.agent_link import AsyncAgentGrants
from botvault.gateway.config import GatewayConfig
from botvault.gateway.coordination import LocalCoordinator
from botvault.grant_ops import add_grant
from botvault.nonces import key_id
from botvault.rate_limits import Governor
from botvault.trading_policy import Policy

from .gateway_stack import Credential, Stack, gateway_stack, real_api_key
from .gateway_support import ListAuditor, running_gateway
from .kraken_server import http_json

ADD = "/0/private/AddOrder"
ORDER = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "1000",
         "volume": "0.01"}


class CountingGrants(AsyncAgentGrants):
    """The real agent link, recording the operation of each round trip."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(socket_path_for(stack.keys.path), vault_path=stack.keys.path)
        self.ops: list[str] = []

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        self.ops.append(op)
        return await super()._call(op, **args)

    def taken(self) -> list[str]:
        ops, self.ops = self.ops, []
        return ops


@pytest.fixture
def stack(vault_path: Path) -> Iterator[Stack]:
    with gateway_stack(vault_path) as s:
        yield s


@pytest.fixture
def local(stack: Stack) -> Iterator[tuple[str, CountingGrants, ListAuditor]]:
    """A second gateway, in this process, on the stack's agent, vault and stand-in."""
    grants, auditor = CountingGrants(stack), ListAuditor()
    config = GatewayConfig(spot_url=stack.kraken.url, futures_url=stack.kraken.url,
                           tier="pro")
    with running_gateway(config, grants, stack.keys.path, audit=auditor) as url:
        yield url, grants, auditor


def _order(url: str, cred: Credential, *, nonce: int | None = None,
           secret: str | None = None) -> tuple[int, Any]:
    nonce = nonce if nonce is not None else time.time_ns() // 1000
    body = urlencode({"nonce": nonce, **ORDER})
    return http_json(url, "POST", ADD, body, {
        "API-Key": cred.api_key,
        "API-Sign": sign_spot(secret or cred.api_secret, ADD, nonce, body),
        "Content-Type": "application/x-www-form-urlencoded"})


def test_a_grant_seen_since_the_vault_last_changed_takes_one_agent_call(
        stack: Stack, local: tuple[str, CountingGrants, ListAuditor]) -> None:
    url, grants, auditor = local
    bot = stack.grant("bot", "spot")
    assert _order(url, bot)[1]["error"] == []
    assert grants.taken() == ["grant_keys", "grant_verify", "grant_sign"]
    for _ in range(3):
        assert _order(url, bot)[1]["error"] == []
        assert grants.taken() == ["grant_sign"]  # checked and signed in one
    stack.grant("other", "spot")  # the vault is saved: the next goes through both steps
    assert _order(url, bot)[1]["error"] == []
    assert grants.taken() == ["grant_verify", "grant_sign"]
    assert _order(url, bot)[1]["error"] == []
    assert grants.taken() == ["grant_sign"]
    assert stack.kraken.paths[ADD] == 6
    # Each forwarded request has its durable line before it left, and its outcome after.
    sent = [line for line in auditor.lines if line["phase"] == "sent"]
    assert len(sent) == 6 and {line["grant"] for line in sent} == {"bot"}


def test_the_one_step_refuses_what_the_two_steps_refuse(
        stack: Stack, local: tuple[str, CountingGrants, ListAuditor]) -> None:
    url, grants, _ = local
    bot = stack.grant("bot", "spot")
    nonce = time.time_ns() // 1000
    assert _order(url, bot, nonce=nonce)[1]["error"] == []
    grants.taken()
    # A replay of what was just sent, a stale nonce, a signature made with another secret.
    assert _order(url, bot, nonce=nonce)[1]["error"] == ["EAPI:Invalid nonce"]
    assert grants.taken() == ["grant_sign"]  # refused by the agent in the one call
    assert _order(url, bot, nonce=nonce - 60_000_000)[1]["error"] == ["EAPI:Invalid nonce"]
    assert _order(url, bot, secret=stack.keys.secrets["spot"])[1]["error"] == [
        "EAPI:Invalid signature"]
    # A Spot grant at a Futures endpoint is unknown there, one step or two.
    assert _order(url, bot)[1]["error"] == []
    path, nonce_text = "/derivatives/api/v3/openorders", str(time.time_ns() // 1000)
    status, doc = http_json(url, "GET", path, headers={
        "APIKey": bot.api_key, "Nonce": nonce_text,
        "Authent": sign_futures(bot.api_secret, path, nonce_text, "")})
    assert (status, doc["result"], doc["error"]) == (200, "error", "authenticationError")
    assert stack.kraken.paths[ADD] == 2 and "/derivatives/api/v3/openorders" not in \
        stack.kraken.paths


def test_a_refusal_on_the_one_step_is_not_counted_under_the_grant(stack: Stack) -> None:
    # As on the two steps: a badly signed request is nobody's until the agent says whose.
    grants, auditor = CountingGrants(stack), ListAuditor()
    config = GatewayConfig(spot_url=stack.kraken.url, futures_url=stack.kraken.url,
                           tier="pro")
    bot = stack.grant("bot", "spot")
    with running_gateway(config, grants, stack.keys.path, audit=auditor) as url:
        assert _order(url, bot)[1]["error"] == []
        assert _order(url, bot, secret=stack.keys.secrets["spot"])[1]["error"] == [
            "EAPI:Invalid signature"]
        assert grants.taken()[-1] == "grant_sign"  # refused on the one step
        assert _order(url, bot)[1]["error"] == []  # the grant goes on, through both steps
        assert grants.taken() == ["grant_verify", "grant_sign"]
    summaries = [(r["outcome"], r["grant"], r["count"]) for r in auditor.lines
                 if r["phase"] == "summary"]
    assert summaries == [("invalid-signature", None, 1)]


def test_a_grant_with_a_trading_policy_always_takes_both_steps(
        stack: Stack, local: tuple[str, CountingGrants, ListAuditor]) -> None:
    url, grants, _ = local
    with Vault.open_with_key(stack.keys.path, stack.keys.data_key) as vault:
        made = add_grant(vault, "careful", entry="spot", general="full", withdrawal="none",
                         policy=Policy(pairs=("XBTUSD",), max_order_volume=Decimal(1)))
    bot = Credential(made.api_key, made.api_secret.reveal())
    for _ in range(3):
        assert _order(url, bot)[1]["error"] == []
        assert "grant_verify" in grants.taken()  # its pair aliases are looked up first


def test_the_turn_is_free_only_when_nobody_holds_or_waits_for_it(tmp_path: Path) -> None:
    vault = tmp_path / "v.bv"
    key = key_id("kraken-spot", real_api_key("spot"))
    coordinator = LocalCoordinator(vault, Governor("pro"))

    async def scenario() -> list[bool]:
        go = asyncio.Event()

        async def take() -> None:
            await go.wait()
            async with coordinator.hold(key, time.monotonic() + 5):
                await asyncio.sleep(0.01)

        waiter = asyncio.ensure_future(take())  # made before the hold: not its holder
        seen = [coordinator.free(key)]  # never taken: not known to be free
        async with coordinator.hold(key, time.monotonic() + 5):
            seen.append(coordinator.free(key))  # held
            go.set()
            await asyncio.sleep(0.01)
            seen.append(coordinator.free(key))  # held, and one waits
        await asyncio.sleep(0)
        seen.append(coordinator.free(key))  # handed to the waiter
        await waiter
        seen.append(coordinator.free(key))  # nobody
        return seen

    assert asyncio.run(scenario()) == [False, False, False, False, True]

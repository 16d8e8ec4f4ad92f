"""Bots that share one Kraken key, each a real process, for the ordering tests and the bench.

`python -m tests.integration_bots MODE URL COUNT` makes COUNT private requests with one client
built as the README shows it, against a StrictKraken at URL, and prints one JSON line: how many
calls raised or returned an error. Modes named `agent-*` are botvault's integrations (the
agent of $BOTVAULT_PATH signs, entries "spot" and "fut"); `default-*` is the same client as
its own documentation shows it, with the secret ($BOT_SECRET) and its own nonces, for the
bench's same-run baseline. The exchange's own count (`StrictKraken.outcomes`) is the verdict;
the bot's count is a cross-check.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["AGENT_MODES", "COUNTER_KINDS", "DEFAULT_MODES", "ENTRY_OF", "run_bots"]

ROOT = Path(__file__).resolve().parent.parent
# Concurrent tasks per process in the asyncio modes: the order must hold inside one loop too.
TASKS = 5

# mode -> the vault entry (and so the StrictKraken key) it uses.
ENTRY_OF = {
    "ccxt-kraken": "spot", "ccxt-krakenfutures": "fut",
    "ccxt-async-kraken": "spot", "ccxt-async-krakenfutures": "fut",
    "sdk-spot": "spot", "sdk-futures": "fut", "sdk-async-spot": "spot",
    "sdk-async-futures": "fut", "krakenex": "spot",
}
AGENT_MODES = [f"agent-{m}" for m in ENTRY_OF] + ["config-ccxt-kraken",
                                                  "config-ccxt-krakenfutures"]
DEFAULT_MODES = [f"default-{m}" for m in ENTRY_OF]
# The vault's counter without the order (`ccxt_agent_config`, the SDK's `with_vault_nonces`
# recipe): increasing nonces, sent in whatever order the processes manage.
COUNTER_KINDS = ("ccxt-kraken", "sdk-spot", "sdk-futures")


def _ccxt_urls(kind: str, url: str) -> dict[str, Any]:
    base = url if kind == "kraken" else url + "/derivatives/api/"
    return {"urls": {"api": {"public": base, "private": base}}, "enableRateLimit": False}


def _ccxt_call(exchange: Any) -> Any:
    if exchange.id == "kraken":
        return exchange.private_post_balance()
    return exchange.private_get_accounts()


def _sync_bot(mode: str, url: str, key: str) -> tuple[Callable[[], Any], Callable[[], None]]:
    """(one private request, close) for a synchronous mode."""
    agent_mode = mode.startswith("agent-")
    kind = mode.split("-", 1)[1]
    entry = ENTRY_OF[kind]
    client: Any = None
    if mode.startswith("counter-"):
        return _counter_bot(kind, url)
    if mode.startswith("config-"):  # ccxt_agent_config: a config dict, the agent at the wire
        import ccxt

        from botvault import agent
        from botvault.integrations.ccxt_config import ccxt_agent_config

        name = kind.removeprefix("ccxt-")
        exchange = getattr(ccxt, name)(ccxt_agent_config(agent.connect(), entry,
                                                         **_ccxt_urls(name, url)))
        return (lambda: _ccxt_call(exchange)), lambda: None
    if agent_mode:
        from botvault import agent
        from botvault.integrations.agent_signed import (
            ccxt_exchange,
            kraken_sdk_client,
            krakenex_api,
        )

        client = agent.connect()
    secret = os.environ.get("BOT_SECRET", "")
    if kind.startswith("ccxt-"):
        import ccxt

        cls = getattr(ccxt, kind.removeprefix("ccxt-"))
        config = _ccxt_urls(kind.removeprefix("ccxt-"), url)
        exchange = ccxt_exchange(cls, entry, client, **config) if agent_mode else \
            cls({"apiKey": key, "secret": secret, **config})
        return (lambda: _ccxt_call(exchange)), lambda: None
    if kind in ("sdk-spot", "sdk-futures"):
        if kind == "sdk-spot":
            from kraken.spot import User as SpotUser

            user = kraken_sdk_client(SpotUser, entry, client, url=url) if agent_mode else \
                SpotUser(key=key, secret=secret, url=url)
            return user.get_account_balance, lambda: None
        from kraken.futures import User as FuturesUser

        fut = kraken_sdk_client(FuturesUser, entry, client, url=url) if agent_mode else \
            FuturesUser(key=key, secret=secret, url=url)
        return fut.get_wallets, lambda: None
    import krakenex

    api = krakenex_api(entry, client) if agent_mode else krakenex.API(key, secret)
    api.uri = url

    def query() -> Any:
        answer = api.query_private("Balance")
        if answer.get("error"):
            raise RuntimeError(answer["error"])
        return answer

    return query, api.close


def _counter_bot(kind: str, url: str) -> tuple[Callable[[], Any], Callable[[], None]]:
    from botvault import agent

    client = agent.connect()
    entry = ENTRY_OF[kind]
    if kind == "ccxt-kraken":
        import ccxt

        # The counter-only recipe: the vault's nonces, the client's own signing and sending.
        creds = client.credentials(entry)
        exchange = ccxt.kraken({"apiKey": creds.api_key, "secret": creds.api_secret.reveal(),
                                "nonce": lambda: client.next_nonce(entry),
                                **_ccxt_urls("kraken", url)})
        return (lambda: _ccxt_call(exchange)), lambda: None
    from botvault.integrations.kraken_sdk import with_vault_nonces

    creds = client.credentials(entry)
    if kind == "sdk-spot":
        from kraken.spot import User as SpotUser

        user = with_vault_nonces(SpotUser, lambda: client.next_nonce(entry))(
            key=creds.api_key, secret=creds.api_secret.reveal(), url=url)
        return user.get_account_balance, lambda: None
    from kraken.futures import User as FuturesUser

    fut = with_vault_nonces(FuturesUser, lambda: client.next_nonce(entry))(
        key=creds.api_key, secret=creds.api_secret.reveal(), url=url)
    return fut.get_wallets, lambda: None


async def _async_bot(mode: str, url: str, key: str
                     ) -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]:
    agent_mode = mode.startswith("agent-")
    kind = mode.split("-", 1)[1]
    entry = ENTRY_OF[kind]
    client: Any = None
    if agent_mode:
        from botvault import agent
        from botvault.integrations.agent_signed import ccxt_exchange, kraken_sdk_client

        client = agent.connect()
    secret = os.environ.get("BOT_SECRET", "")
    if kind.startswith("ccxt-async-"):
        import ccxt.async_support as accxt

        name = kind.removeprefix("ccxt-async-")
        cls = getattr(accxt, name)
        config = _ccxt_urls(name, url)
        exchange = ccxt_exchange(cls, entry, client, **config) if agent_mode else \
            cls({"apiKey": key, "secret": secret, **config})
        return (lambda: _ccxt_call(exchange)), exchange.close
    from kraken.base_api import FuturesAsyncClient, SpotAsyncClient

    sdk_cls: Any = SpotAsyncClient if kind == "sdk-async-spot" else FuturesAsyncClient
    sdk = kraken_sdk_client(sdk_cls, entry, client, url=url) if agent_mode else \
        sdk_cls(key=key, secret=secret, url=url)
    if kind == "sdk-async-spot":
        return (lambda: sdk.request("POST", "/0/private/Balance")), sdk.close
    return (lambda: sdk.request("GET", "/derivatives/api/v3/accounts")), sdk.close


def _run(mode: str, url: str, count: int, key: str) -> int:
    failed = 0
    if "async" not in mode:
        call, close = _sync_bot(mode, url, key)
        for _ in range(count):
            try:
                call()
            except Exception:  # a rejected request, whatever its type, is what is counted
                failed += 1
        close()
        return failed

    async def main() -> int:
        call, close = await _async_bot(mode, url, key)
        errors = 0

        async def task(n: int) -> None:
            nonlocal errors
            for _ in range(n):
                try:
                    await call()
                except Exception:  # a rejected request, whatever its type, is what is counted
                    errors += 1

        shares = [count // TASKS + (i < count % TASKS) for i in range(TASKS)]
        await asyncio.gather(*(task(n) for n in shares))
        await close()
        return errors

    return asyncio.run(main())


def run_bots(mode: str, url: str, *, processes: int = 4, count: int = 150,
             key: str = "", secret: str = "", timeout: float = 300) -> list[int]:
    """Start `processes` bots of `mode` at once; the failures each one counted."""
    env = {**os.environ, "BOT_SECRET": secret,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    bots = [subprocess.Popen(
        [sys.executable, "-m", "tests.integration_bots", mode, url, str(count), key],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        for _ in range(processes)]
    failures: list[int] = []
    for bot in bots:
        out, err = bot.communicate(timeout=timeout)
        if bot.returncode != 0:
            raise RuntimeError(f"bot {mode} exited {bot.returncode}: {err.decode()[-2000:]}")
        failures.append(int(json.loads(out.decode().strip().splitlines()[-1])["failed"]))
    return failures


if __name__ == "__main__":
    _mode, _url, _count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _key = sys.argv[4] if len(sys.argv) > 4 else ""
    print(json.dumps({"failed": _run(_mode, _url, _count, _key)}))

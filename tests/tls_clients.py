"""One bot process over HTTPS: `python -m tests.tls_clients CLIENT URL COUNT`, credentials as
a JSON line on stdin, the gateway's CA as each client library takes it (the environment
variable it reads, or ccxt's own option): a real, unchanged client whose only settings are its
base URL, its credentials and the CA. Prints a JSON tally, as `tests.gateway_clients`."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any

from .gateway_clients import ORDER, drive, krakenex_calls, sdk_calls


def ccxt_sync_calls(url: str, key: str, secret: str
                    ) -> tuple[Callable[[], Any], Callable[[], Any]]:
    ccxt = import_module("ccxt")
    # ccxt's sync exchanges ignore the environment unless told (`requests_trust_env`); its
    # `verify` cannot carry a CA file (ccxt sends `verify and validateServerSsl`: True).
    exchange = ccxt.kraken({"apiKey": key, "secret": secret, "requests_trust_env": True,
                            "urls": {"api": {"public": url, "private": url}}})
    return (exchange.private_post_balance,
            lambda: exchange.private_post_addorder(dict(ORDER)))


def ccxt_async_calls(url: str, key: str, secret: str
                     ) -> tuple[Callable[[], Any], Callable[[], Any]]:
    ccxt = import_module("ccxt.async_support")
    loop = asyncio.new_event_loop()
    # ccxt's async exchanges build their SSL context from `cafile` (certifi by default).
    exchange = ccxt.kraken({"apiKey": key, "secret": secret, "cafile": os.environ["BOT_CA"],
                            "urls": {"api": {"public": url, "private": url}}})
    return (lambda: loop.run_until_complete(exchange.private_post_balance()),
            lambda: loop.run_until_complete(exchange.private_post_addorder(dict(ORDER))))


def sdk_async_calls(url: str, key: str, secret: str
                    ) -> tuple[Callable[[], Any], Callable[[], Any]]:
    from kraken.spot import SpotAsyncClient  # aiohttp: the CA from SSL_CERT_FILE

    loop = asyncio.new_event_loop()

    async def make() -> Any:  # its aiohttp session is made on the loop that uses it
        return SpotAsyncClient(key, secret, url=url)

    client = loop.run_until_complete(make())
    return (lambda: loop.run_until_complete(client.request("POST", "/0/private/Balance")),
            lambda: loop.run_until_complete(
                client.request("POST", "/0/private/AddOrder", params=dict(ORDER))))


CLIENTS = {"ccxt": ccxt_sync_calls, "ccxt-async": ccxt_async_calls, "sdk": sdk_calls,
           "sdk-async": sdk_async_calls, "krakenex": krakenex_calls}


def main(argv: list[str]) -> None:
    drive(CLIENTS, ("EAPI:Invalid nonce", "EAPI:Rate limit exceeded", "EAPI:Invalid key",
                    "EService:Unavailable"), argv)


if __name__ == "__main__":
    main(sys.argv[1:])

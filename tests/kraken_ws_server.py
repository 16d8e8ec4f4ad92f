"""A local stand-in for Kraken's websocket APIs, as strict as the tests need.

- Spot (v2): a private subscription must carry the token that the REST stand-in handed out
  for GetWebSocketsToken (`token`); anything else is answered `success: false`.
- Futures (v1): `{"event": "challenge", "api_key": ...}` is answered with a fresh challenge;
  a private subscription must carry that challenge and its signature by the key's secret,
  checked here with an implementation written from Kraken's documentation
  (base64(HMAC-SHA512(base64-decoded secret, SHA-256(challenge)))), not botvault's.

Every message received is kept in `received`. Run it inside the test's event loop
(`async with KrakenWS(...) as ws`); `ssl_context` makes it a wss:// server, which the SDK's
Futures client insists on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

__all__ = ["KrakenWS"]


@dataclass
class KrakenWS:
    token: str = ""
    futures_keys: dict[str, str] = field(default_factory=dict)  # api key -> secret
    ssl_context: ssl.SSLContext | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    challenges: dict[str, str] = field(default_factory=dict)  # api key -> last challenge
    port: int = 0
    _server: Server | None = None

    async def __aenter__(self) -> KrakenWS:
        self._server = await serve(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def nudge(self) -> None:
        """Send every open connection a harmless message. The SDK's clients look at their stop
        flag only between messages (waiting up to 10 s for one): a nudge lets `close()` end
        at once."""
        if self._server is not None:
            for conn in list(self._server.connections):
                await conn.send(json.dumps({"event": "info", "method": "pong"}))

    async def _serve(self, conn: ServerConnection) -> None:
        async for raw in conn:
            message = json.loads(raw)
            self.received.append(message)
            answer = self._answer(message)
            if answer is not None:
                await conn.send(json.dumps(answer))

    # One return per kind of message, in the order Kraken documents them.
    def _answer(  # noqa: PLR0911
            self, message: dict[str, Any]) -> dict[str, Any] | None:
        if message.get("method") == "ping":
            return {"method": "pong"}
        if message.get("method") == "subscribe":  # Spot v2
            params = message.get("params", {})
            ok = bool(self.token) and hmac.compare_digest(
                str(params.get("token", "")).encode(), self.token.encode())
            return {"method": "subscribe", "success": ok,
                    "result": {"channel": params.get("channel")},
                    **({} if ok else {"error": "EGeneral:Invalid arguments:token"})}
        event = message.get("event")
        if event == "challenge":  # Futures
            key = str(message.get("api_key", ""))
            if key not in self.futures_keys:
                return {"event": "error", "message": "Invalid API key"}
            self.challenges[key] = fresh = str(uuid.uuid4())
            return {"event": "challenge", "message": fresh}
        if event == "subscribe" and "signed_challenge" in message:
            key = str(message.get("api_key", ""))
            challenge: str | None = self.challenges.get(key)
            if challenge is None or message.get("original_challenge") != challenge \
                    or not _challenge_ok(self.futures_keys[key], challenge,
                                         str(message["signed_challenge"])):
                return {"event": "error", "message": "Json Error"}
            return {"event": "subscribed", "feed": message.get("feed")}
        return None


def _challenge_ok(secret: str, challenge: str, given: str) -> bool:
    digest = hashlib.sha256(challenge.encode()).digest()
    expected = base64.b64encode(
        hmac.new(base64.b64decode(secret), digest, hashlib.sha512).digest()).decode()
    return hmac.compare_digest(expected.encode(), given.encode())

"""The gateway's settings: where it listens, where it forwards, what it refuses to start with."""

from __future__ import annotations

from pathlib import Path

import pytest

from botvault.errors import InvalidInputError
from botvault.gateway.config import GatewayConfig, ListenAddress, parse_listen
from botvault.gateway.grants import SignRequest
from botvault.gateway.kraken_errors import Api, Reason, refusal
from botvault.gateway.routing import route
from botvault.rate_limits import FUTURES_COSTS

from .kraken_server import FUTURES_COSTS as SERVER_FUTURES_COSTS


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8422", ListenAddress("127.0.0.1", 8422)),
    ("8000", ListenAddress("127.0.0.1", 8000)),
    ("[::1]:0", ListenAddress("::1", 0)),
    ("10.1.2.3:80", ListenAddress("10.1.2.3", 80)),
])
def test_listen_addresses(text: str, expected: ListenAddress) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["localhost:80", "127.0.0.1:", "127.0.0.1:65536",
                                  "127.0.0.1:-1", "127.0.0.1:\uff18\uff10", "host", ""])
def test_bad_listen_addresses_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_listen(text)


def test_loopback_only_unless_tls() -> None:
    assert GatewayConfig(listen=parse_listen("[::1]:1")).listen.is_loopback
    with pytest.raises(InvalidInputError, match="loopback only"):
        GatewayConfig(listen=parse_listen("192.168.1.5:8422"))
    # --allow-remote alone no longer opens another address in plain HTTP.
    with pytest.raises(InvalidInputError, match="without TLS"):
        GatewayConfig(listen=parse_listen("192.168.1.5:8422"), allow_remote=True)
    assert not GatewayConfig(listen=parse_listen("192.168.1.5:8422"), tls_cert=Path("c"),
                             tls_key=Path("k")).listen.is_loopback
    with pytest.raises(InvalidInputError, match="go together"):
        GatewayConfig(tls_cert=Path("c"))


@pytest.mark.parametrize("url", ["http://api.kraken.com", "ftp://x", "https://u:p@x",
                                 "https://api.kraken.com/0/private", "https://x?a=1", "x"])
def test_upstreams_must_be_https_origins(url: str) -> None:
    with pytest.raises(InvalidInputError):
        GatewayConfig(spot_url=url)


def test_plain_http_upstream_only_on_loopback_and_other_settings() -> None:
    assert GatewayConfig(spot_url="http://127.0.0.1:9/").spot_url == "http://127.0.0.1:9/"
    with pytest.raises(InvalidInputError):
        GatewayConfig(tier="gold")
    with pytest.raises(InvalidInputError):
        GatewayConfig(max_wait=0)


def test_routes() -> None:
    spot = route("/0/private/AddOrder", set())
    assert spot is not None and spot.api is Api.SPOT and spot.private
    public = route("/0/public/Time", {"api-key"})
    assert public is not None and not public.private
    fut = route("/derivatives/api/v3/accounts", set())
    assert fut is not None and fut.private and fut.endpoint == "/api/v3/accounts"
    ticker = route("/derivatives/api/v3/tickers", set())
    assert ticker is not None and not ticker.private
    signed_public = route("/derivatives/api/v3/tickers", {"apikey"})
    assert signed_public is not None and signed_public.private  # credentials: checked
    history = route("/api/history/v2/orders", set())
    assert history is not None and history.api is Api.FUTURES and history.private
    for bad in ("/", "/1/private/x", "/0/../x", "/derivatives//x", "/0/" + "a" * 600,
                "/0/privé", "/0/private/Withdr%61w", "/0/private/Balance;x",
                "/derivatives/api/v3/with%64rawal", "/0/private/A ddOrder"):
        assert route(bad, set()) is None


def test_refusal_shapes() -> None:
    assert refusal(Api.SPOT, Reason.INVALID_KEY).body == (
        b'{"error": ["EAPI:Invalid key"], "result": {}}')
    futures = refusal(Api.FUTURES, Reason.RATE_LIMIT)
    # HTTP 200, as Kraken documents it: a 429 is DDoSProtection to ccxt, a bare Exception to
    # python-kraken-sdk (tests/test_gateway_outcomes.py measures each client).
    assert futures.status == 200 and b'"error": "apiLimitExceeded"' in futures.body
    for reason in Reason:
        if reason is not Reason.OUTCOME_UNKNOWN:
            assert refusal(Api.SPOT, reason).body.startswith(b'{"error": ["E')
            assert b'"result": "error"' in refusal(Api.FUTURES, reason).body
    lost = refusal(Api.FUTURES, Reason.OUTCOME_UNKNOWN)
    assert (lost.status, lost.content_type) == (504, "text/plain")
    assert b"outcome unknown" in lost.body and b"Unavailable" not in lost.body


def test_futures_costs_agree_with_the_stand_in() -> None:
    for endpoint, cost in SERVER_FUTURES_COSTS.items():
        assert FUTURES_COSTS[endpoint] == cost


def test_a_sign_request_shows_no_body_or_signature() -> None:
    request = SignRequest("bvg_k", "/0/private/AddOrder", "POST", "volume=123.456",
                          "SIGNATURE-VALUE", "", "form", "0" * 32)
    assert "123.456" not in repr(request) and "SIGNATURE-VALUE" not in repr(request)

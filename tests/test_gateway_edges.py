"""The gateway at its edges: refused bodies are not read, answers of any size stream through,
no header is added, a Futures request signs query + body as python-kraken-sdk does.

Unit tests of the gateway's own logic: the in-process gateway with `FakeGrants` (the real
agent's checks in process), the strict stand-in upstream, real sockets and real clients."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from botvault.gateway.config import GatewayConfig

from .gateway_support import FakeGrant, FakeGrants, b64secret, running_gateway
from .kraken_server import StrictKraken

SPOT, FUT = "REALSPOTKEY", "REALFUTKEY"
LIMIT = 64 * 1024


@pytest.fixture
def kraken() -> Iterator[StrictKraken]:
    with StrictKraken(tier="pro", enforce_rate=False) as server:
        yield server


@pytest.fixture
def grants(kraken: StrictKraken) -> FakeGrants:
    fake = FakeGrants()
    for api_key, exchange, product in ((SPOT, "kraken-spot", "spot"),
                                       (FUT, "kraken-futures", "futures")):
        real = b64secret()
        kraken.add_key(api_key, real, product)
        fake.add(f"bvg_{api_key}", FakeGrant(f"bot-{api_key}", f"entry-{api_key}", exchange,
                                             api_key, real))
    return fake


@pytest.fixture
def gateway(kraken: StrictKraken, grants: FakeGrants, tmp_path: Path) -> Iterator[str]:
    config = GatewayConfig(spot_url=kraken.url, futures_url=kraken.url, tier="pro",
                           max_body=LIMIT)
    with running_gateway(config, grants, tmp_path / "vault.bv") as url:
        yield url


def _connect(url: str) -> socket.socket:
    host, port = urlsplit(url).netloc.split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _read_to_eof(sock: socket.socket) -> bytes:
    """Everything until the gateway closes; socket.timeout if it keeps the connection open
    (aiohttp's lingering read of an unread body lasts 10 s)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _refused_and_closed(sock: socket.socket, send_more: bytes = b"") -> bytes:
    """The gateway's answer up to its close. Closing with the rest of the body unread makes
    the kernel reset the connection, which can overtake the 413 on its way: then the answer
    is b"reset". Either way the connection ends at once, not after a lingering read."""
    try:
        if send_more:
            sock.sendall(send_more)
        return _read_to_eof(sock)
    except (ConnectionResetError, BrokenPipeError):
        return b"reset"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_answered_413_and_closed_unread(
        gateway: str, kraken: StrictKraken, chunked: bool) -> None:
    with _connect(gateway) as sock:
        head = (b"POST /0/private/Balance HTTP/1.1\r\nHost: x\r\nAPI-Key: k\r\nAPI-Sign: s\r\n")
        if chunked:
            chunk = b"y" * 16384
            # Past the limit, and the body goes on.
            body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk)
                            for _ in range(LIMIT // len(chunk) + 2))
            answer = _refused_and_closed(sock, head + b"Transfer-Encoding: chunked\r\n\r\n"
                                         + body)
        else:
            # Announces 10 MB and sends 64 KiB of it: the gateway must not wait for the rest.
            answer = _refused_and_closed(
                sock, head + b"Content-Length: 10000000\r\n\r\n" + b"x" * 65536)
    if answer != b"reset":
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"Connection: close" in answer
        assert b"EGeneral:Invalid arguments" in answer
    assert kraken.paths["/0/private/Balance"] == 0


def test_a_client_sees_the_413_of_an_announced_oversized_body(gateway: str) -> None:
    # A client that waits for the answer before sending (Expect: 100-continue, or a body
    # held back) reads the 413 whole.
    with _connect(gateway) as sock:
        sock.sendall(b"POST /0/private/Balance HTTP/1.1\r\nHost: x\r\nAPI-Key: k\r\n"
                     b"API-Sign: s\r\nContent-Length: 10000000\r\n\r\n")
        answer = _read_to_eof(sock)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in answer


def test_a_body_within_the_limit_keeps_the_connection(gateway: str, grants: FakeGrants
                                                      ) -> None:
    with requests.Session() as session:
        for _ in range(2):
            answer = session.post(gateway + "/0/public/Time", data=b"x" * (LIMIT - 1))
            assert answer.status_code == 200


@pytest.mark.parametrize(("method", "size"), [("RetrieveExport", 20 << 20),
                                              ("RetrieveExport", 1)])
def test_answers_of_any_size_stream_through_unchanged(gateway: str, grants: FakeGrants,
                                                      kraken: StrictKraken, method: str,
                                                      size: int) -> None:
    from kraken.spot import User

    kraken.export_size = size  # over the old 16 MiB cap
    user = User(f"bvg_{SPOT}", grants.grants[f"bvg_{SPOT}"].secret, url=gateway)
    answer = user.request("POST", f"/0/private/{method}", params={"id": "TCJA"},
                          return_raw=True)
    assert isinstance(answer, requests.Response) and answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/zip"
    assert len(answer.content) == size
    assert answer.content == bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def test_no_header_is_added_that_the_bot_did_not_send(gateway: str, grants: FakeGrants,
                                                      kraken: StrictKraken) -> None:
    from botvault.exchanges.kraken import sign_spot

    path, body = "/0/private/Balance", "nonce=5"
    with _connect(gateway) as sock:
        sock.sendall((
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAPI-Key: bvg_{SPOT}\r\n"
            f"API-Sign: {sign_spot(grants.grants[f'bvg_{SPOT}'].secret, path, 5, body)}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode())
        assert _read_to_eof(sock).startswith(b"HTTP/1.1 200 ")
    sent = {k.lower() for k in kraken.last_headers[path]}
    # Host and Content-Length are HTTP's own; API-Key and API-Sign the real key's.
    assert sent == {"host", "content-length", "api-key", "api-sign"}


def test_the_bots_own_headers_pass_as_sent(gateway: str, grants: FakeGrants,
                                           kraken: StrictKraken) -> None:
    from kraken.spot import User

    User(f"bvg_{SPOT}", grants.grants[f"bvg_{SPOT}"].secret,
         url=gateway).get_account_balance()
    sent = {k.lower(): v for k, v in kraken.last_headers["/0/private/Balance"].items()}
    assert sent["content-type"].startswith("application/x-www-form-urlencoded")
    assert "python-kraken-sdk" in sent["user-agent"]
    assert sent["accept"] == "*/*"  # requests' own, sent by the bot
    assert sent["accept-encoding"] == "gzip, deflate"


def _futures_post(url: str, grant: FakeGrant, grant_key: str, query: str, body: str,
                  signed: str) -> Any:
    from botvault.exchanges.kraken import sign_futures

    path = "/derivatives/api/v3/sendorder"
    headers = {"APIKey": grant_key, "Nonce": "1",
               "Authent": sign_futures(grant.secret, path, "1", signed),
               "Content-Type": "application/x-www-form-urlencoded"}
    return requests.post(f"{url}{path}?{query}", data=body, headers=headers,
                         timeout=10).json()


def test_a_futures_post_with_query_and_body_is_signed_over_both(
        gateway: str, grants: FakeGrants, kraken: StrictKraken) -> None:
    grant = grants.grants[f"bvg_{FUT}"]
    query, body = "orderType=lmt&symbol=PF_XBTUSD", "side=buy&size=1&limitPrice=1000"
    # python-kraken-sdk's rule (query + body): checked, re-signed, accepted by the stand-in.
    assert _futures_post(gateway, grant, f"bvg_{FUT}", query, body,
                         query + body)["result"] == "success"
    # Signed over the body only, or the query only: refused before it leaves.
    for signed in (body, query):
        assert _futures_post(gateway, grant, f"bvg_{FUT}", query, body,
                             signed)["error"] == "authenticationError"
    assert kraken.accepted() == 1 and kraken.rejected() == {}

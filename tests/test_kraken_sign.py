"""Kraken request signing against published vectors and python-kraken-sdk.

The vector file pins the behaviour on its own; the cross-checks against python-kraken-sdk (the
`integrations` extra) add random inputs on top.
"""

from __future__ import annotations

import asyncio
import base64
import json
import string
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from botvault.errors import InvalidInputError
from botvault.exchanges.kraken import (
    MAX_SPOT_NONCE,
    futures_signed_path,
    sign_futures,
    sign_futures_challenge,
    sign_spot,
)
from botvault.secret import Secret

VECTORS_FILE = Path(__file__).parent / "data" / "kraken_sign_vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]



def _vector(name: str) -> dict[str, Any]:
    return next(v for v in VECTORS if v["name"] == name)


SPOT_DOC_SECRET: str = _vector("spot-docs-addorder")["secret"]
WS_DOC_SECRET: str = _vector("challenge-docs")["secret"]

SDK_MISSING = "python-kraken-sdk (the integrations extra) is not installed"


def _sign(vector: dict[str, Any], secret: str | Secret) -> str:
    kind = vector["kind"]
    if kind == "spot":
        return sign_spot(secret, vector["uri_path"], vector["nonce"], vector["post_data"])
    if kind == "futures":
        return sign_futures(secret, vector["endpoint_path"], vector["nonce"], vector["post_data"])
    assert kind == "futures_challenge"
    return sign_futures_challenge(secret, vector["challenge"])


def _by_outcome(outcome: str) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in VECTORS if v["outcome"] == outcome]


# --- the vector file ----------------------------------------------------------------------------

def test_vector_file_is_well_formed() -> None:
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names))
    for vector in VECTORS:
        assert vector["kind"] in {"spot", "futures", "futures_challenge"}
        assert vector["outcome"] in {"match", "mismatch", "invalid_input"}
        assert vector["source"].strip()
        assert ("expected" in vector) == (vector["outcome"] != "invalid_input")


def test_vector_file_covers_every_kind_and_source() -> None:
    def has(kind: str, outcome: str, source: str) -> bool:
        return any(v["kind"] == kind and v["outcome"] == outcome and source in v["source"]
                   for v in VECTORS)

    assert has("spot", "match", "Kraken API docs")
    assert has("futures_challenge", "match", "Kraken API docs")
    assert has("futures", "match", "python-kraken-sdk")
    for kind in ("spot", "futures", "futures_challenge"):
        assert has(kind, "mismatch", "")
    assert has("spot", "invalid_input", "")
    # A no-Nonce-header request (ccxt's way) is pinned too.
    assert any(v["kind"] == "futures" and v["nonce"] == "" for v in VECTORS)


@pytest.mark.parametrize("vector", _by_outcome("match"))
def test_matching_vectors(vector: dict[str, Any]) -> None:
    assert _sign(vector, vector["secret"]) == vector["expected"]
    assert _sign(vector, Secret(vector["secret"])) == vector["expected"]


@pytest.mark.parametrize("vector", _by_outcome("mismatch"))
def test_tampered_vectors_do_not_match(vector: dict[str, Any]) -> None:
    assert _sign(vector, vector["secret"]) != vector["expected"]


@pytest.mark.parametrize("vector", _by_outcome("invalid_input"))
def test_invalid_secret_vectors_are_refused_without_echo(vector: dict[str, Any]) -> None:
    for secret in (vector["secret"], Secret(vector["secret"])):
        with pytest.raises(InvalidInputError) as info:
            _sign(vector, secret)
        _assert_no_leak(info.value, vector["secret"])


# --- secrets ------------------------------------------------------------------------------------

def _assert_no_leak(error: BaseException, secret: str) -> None:
    shown = " ".join([str(error), repr(error), getattr(error, "hint", None) or ""])
    window = min(8, len(secret))
    for start in range(len(secret) - window + 1 if secret else 0):
        assert secret[start:start + window] not in shown
    # The decoder's own exception, which might quote its input some day, is not chained.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


@pytest.mark.parametrize("secret", [
    "",
    SPOT_DOC_SECRET[:-1],                     # padding cut
    SPOT_DOC_SECRET.replace("/", " ", 1),     # space from a line-wrapped copy
    SPOT_DOC_SECRET + "\n",                   # trailing newline from a file
    SPOT_DOC_SECRET.replace("W", "é", 1),     # not ASCII
    "secret-with-dashes_and_underscores==",   # urlsafe alphabet is not Kraken's
    "====",
])
def test_bad_secrets_are_refused_without_echo(secret: str) -> None:
    def spot(s: Secret) -> str:
        return sign_spot(s, "/0/private/Balance", 1, "nonce=1")

    def futures(s: Secret) -> str:
        return sign_futures(s, "/api/v3/accounts", "1", "")

    def challenge(s: Secret) -> str:
        return sign_futures_challenge(s, "c100b894-1729-464d-ace1-52dbce11db42")

    for signer in (spot, futures, challenge):
        with pytest.raises(InvalidInputError) as info:
            signer(Secret(secret))
        _assert_no_leak(info.value, secret)


def test_secret_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        sign_spot(b"a2V5", "/0/private/Balance", 1, "nonce=1")  # type: ignore[arg-type]


def test_signature_is_base64_of_sha512() -> None:
    sig = sign_spot(SPOT_DOC_SECRET, "/0/private/Balance", 1, "nonce=1")
    assert len(base64.b64decode(sig, validate=True)) == 64


# --- Spot arguments -----------------------------------------------------------------------------

@pytest.mark.parametrize("nonce", [-1, MAX_SPOT_NONCE + 1, True, "1", 1.0])
def test_spot_nonce_must_be_an_unsigned_64_bit_int(nonce: Any) -> None:
    with pytest.raises(InvalidInputError):
        sign_spot(SPOT_DOC_SECRET, "/0/private/Balance", nonce, "nonce=1")


def test_spot_nonce_bounds_are_accepted() -> None:
    for nonce in (0, MAX_SPOT_NONCE):
        sign_spot(SPOT_DOC_SECRET, "/0/private/Balance", nonce, f"nonce={nonce}")


@pytest.mark.parametrize(("uri_path", "post_data"), [
    (None, "nonce=1"),
    ("/0/private/Balance", None),
    ("/0/private/Balance", b"nonce=1"),
    ("/0/private/Balance", "nonce=1&x=\ud800"),  # lone surrogate: has no UTF-8 form
])
def test_spot_text_arguments(uri_path: Any, post_data: Any) -> None:
    with pytest.raises(InvalidInputError):
        sign_spot(SPOT_DOC_SECRET, uri_path, 1, post_data)


# --- Futures arguments --------------------------------------------------------------------------

def test_futures_derivatives_prefix_is_not_signed() -> None:
    assert futures_signed_path("/derivatives/api/v3/sendorder") == "/api/v3/sendorder"
    assert futures_signed_path("/api/v3/sendorder") == "/api/v3/sendorder"
    assert futures_signed_path("/api/history/v2/orders") == "/api/history/v2/orders"
    # Only a whole leading segment is a prefix; python-kraken-sdk's removeprefix would cut this.
    assert futures_signed_path("/derivativesx/api") == "/derivativesx/api"


@pytest.mark.parametrize("path", [
    "api/v3/accounts", "", "/api/v3/fills?lastFillTime=x", "/api/v3/fills#x", None,
])
def test_futures_bad_endpoint_paths(path: Any) -> None:
    with pytest.raises(InvalidInputError):
        sign_futures(WS_DOC_SECRET, path, "1", "")


@pytest.mark.parametrize("nonce", [-1, True, "12a", "1\r\nX-Evil: 1", " 1", "١٢", 1.5, None])
def test_futures_bad_nonces(nonce: Any) -> None:
    with pytest.raises(InvalidInputError):
        sign_futures(WS_DOC_SECRET, "/api/v3/accounts", nonce, "")


def test_futures_int_and_str_nonce_agree() -> None:
    as_int = sign_futures(WS_DOC_SECRET, "/api/v3/sendorder", 1708387200000, "size=1")
    as_str = sign_futures(WS_DOC_SECRET, "/api/v3/sendorder", "1708387200000", "size=1")
    assert as_int == as_str


@given(path=st.from_regex(r"/[a-z0-9/_-]{0,40}", fullmatch=True), nonce=st.integers(0, 10**20),
       body=st.text(max_size=200))
def test_futures_prefix_makes_no_difference(path: str, nonce: int, body: str) -> None:
    assume(not path.startswith("/derivatives"))
    with_prefix = sign_futures(WS_DOC_SECRET, "/derivatives" + path, nonce, body)
    assert with_prefix == sign_futures(WS_DOC_SECRET, path, nonce, body)


def test_futures_nonce_and_body_are_bound() -> None:
    # post_data + nonce is a plain concatenation: moving digits between them is the one change a
    # signature cannot see, which is why the nonce also goes in its own header.
    base = sign_futures(WS_DOC_SECRET, "/api/v3/sendorder", "5", "size=1")
    assert sign_futures(WS_DOC_SECRET, "/api/v3/sendorder", "6", "size=1") != base
    assert sign_futures(WS_DOC_SECRET, "/api/v3/sendorder", "5", "size=2") != base
    assert sign_futures(WS_DOC_SECRET, "/api/v3/cancelorder", "5", "size=1") != base


def test_challenge_must_be_text() -> None:
    with pytest.raises(InvalidInputError):
        sign_futures_challenge(WS_DOC_SECRET, None)  # type: ignore[arg-type]


# --- cross-checks with python-kraken-sdk --------------------------------------------------------

@pytest.fixture(scope="module")
def sdk() -> ModuleType:
    module: ModuleType = pytest.importorskip("kraken.base_api", reason=SDK_MISSING)
    return module


@pytest.fixture(scope="module")
def sdk_futures() -> ModuleType:
    module: ModuleType = pytest.importorskip("kraken.futures", reason=SDK_MISSING)
    return module


secrets_b64 = st.binary(min_size=1, max_size=160).map(lambda b: base64.b64encode(b).decode())
futures_paths = st.lists(
    st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=16),
    min_size=1, max_size=5,
).map(lambda segments: "/" + "/".join(segments))
futures_nonces = st.one_of(st.just(""), st.integers(0, 10**20).map(str))


@settings(max_examples=300, deadline=None)
@given(secret=secrets_b64, path=st.text(max_size=60), nonce=st.integers(0, MAX_SPOT_NONCE),
       body=st.text(max_size=300))
def test_spot_agrees_with_python_kraken_sdk(sdk: ModuleType, secret: str, path: str, nonce: int,
                                            body: str) -> None:
    theirs = sdk.SpotClient(key="k", secret=secret)._get_kraken_signature(path, body, nonce)
    assert sign_spot(Secret(secret), path, nonce, body) == theirs


@settings(max_examples=300, deadline=None)
@given(secret=secrets_b64, path=futures_paths, prefixed=st.booleans(), nonce=futures_nonces,
       body=st.text(max_size=300))
def test_futures_agrees_with_python_kraken_sdk(sdk: ModuleType, secret: str, path: str,
                                               prefixed: bool, nonce: str, body: str) -> None:
    # python-kraken-sdk cuts "/derivatives" even off "/derivativesX"; such paths are not Kraken's.
    assume(not path.startswith("/derivatives"))
    sent = "/derivatives" + path if prefixed else path
    client = sdk.FuturesClient(key="k", secret=secret)
    theirs = client._get_kraken_futures_signature(sent, body, nonce)
    assert sign_futures(Secret(secret), sent, nonce, body) == theirs


@settings(max_examples=25, deadline=None)
@given(secret=secrets_b64, challenge=st.one_of(st.uuids().map(str), st.text(max_size=100)))
def test_challenge_agrees_with_python_kraken_sdk(sdk_futures: ModuleType, secret: str,
                                                 challenge: str) -> None:
    async def theirs() -> str:
        # The websocket client needs a running loop to exist; it never connects here.
        client = sdk_futures.FuturesWSClient(key="k", secret=secret)
        try:
            return str(client.get_sign_challenge(challenge))
        finally:
            await client.close()

    assert sign_futures_challenge(Secret(secret), challenge) == asyncio.run(theirs())

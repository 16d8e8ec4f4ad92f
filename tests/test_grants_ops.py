"""Grants in the vault and the agent's grant ops (`grant_resolve`, `grant_sign`), at the ops
level (transport-free `Agent`, injectable clocks) and through a real agent process."""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botvault import Vault, agent
from botvault.agent.ops import Agent
from botvault.errors import (
    AlreadyExistsError,
    GrantError,
    InvalidInputError,
    NotFoundError,
    ScopeError,
)
from botvault.exchanges.kraken import sign_futures, sign_spot, sign_spot_text
from botvault.grant_ops import add_grant, get_grant, list_grants, revoke_grant
from botvault.grant_record import Grant
from botvault.nonces import key_id
from tests.agent_support import (
    PASSPHRASE,
    Keys,
    b64secret,
    pubkey,
    running,
    spec,
)

ENTRIES = {
    "spot": spec("kraken-spot"),
    "spot-ro": spec("kraken-spot", "read-only"),
    "spot-wd": spec("kraken-spot", withdrawal="full"),
    "fut": spec("kraken-futures"),
    "gen": spec("generic"),
}
PUBKEY = {name: pubkey(name) for name in ENTRIES}
ADD = "/0/private/AddOrder"
BALANCE = "/0/private/Balance"


class Clock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def vault(keys: Keys) -> Iterator[Vault]:
    with Vault.open_with_key(keys.path, keys.data_key) as v:
        yield v


@pytest.fixture
def wall() -> Clock:
    return Clock(2_000_000_000.0)


def _agent(keys: Keys, wall: Clock, *, sign_only: bool = False,
           allow_withdrawal: bool = False) -> Agent:
    return Agent(Vault.open_with_key(keys.path, keys.data_key), ttl=60, idle=60,
                 allow_withdrawal=allow_withdrawal, sign_only=sign_only, clock=Clock(),
                 wall_clock=wall)


@pytest.fixture
def ops(keys: Keys, wall: Clock) -> Iterator[Agent]:
    a = _agent(keys, wall)
    yield a
    a.close()


def _grant(vault: Vault, bot: str = "bot", entry: str = "spot", general: str = "full",
           withdrawal: str = "none", expires_in: float | None = None,
           now: float = 2_000_000_000.0) -> Grant:
    return add_grant(vault, bot, entry=entry, general=general, withdrawal=withdrawal,
                     expires_in=expires_in, now=lambda: now)


_FRESH = itertools.count(2_000_000_000_000)  # milliseconds at the `wall` clock's time


def _fresh(body: str) -> str:
    """`body` with a small nonce (these tests' shorthand) made a fresh one: the agent accepts
    a grant-signed request once, while its nonce is within the window of its clock."""
    return re.sub(r'((?:^|&)nonce=|"nonce":\s*"?)(\d{1,9})(?!\d)',
                  lambda m: m.group(1) + str(next(_FRESH)), body)


def _spot_request(grant: Grant, path: str, body: str, *, content_type: str = "form",
                  nonce_text: str | None = None, target: str | None = None,
                  **extra: Any) -> dict[str, Any]:
    body = _fresh(body)
    if nonce_text is None:
        found = re.search(r'(?:^|&)nonce=(\d+)', body) or re.search(r'"nonce":\s*"?(\d+)', body)
        nonce_text = found.group(1) if found else ""
    request = {"op": "grant_sign", "grant_key": grant.api_key, "path": path, "method": "POST",
               "body": body, "nonce_header": "", "content_type": content_type,
               "signature": sign_spot_text(grant.api_secret, path, nonce_text, body),
               "key_id": target or key_id("kraken-spot", PUBKEY[grant.entry])}
    request.update(extra)
    return request


def _ok(response: dict[str, Any]) -> dict[str, Any]:
    assert response["ok"] is True, response
    return response


def _error(response: dict[str, Any]) -> dict[str, Any]:
    assert response["ok"] is False, response
    error: dict[str, Any] = response["error"]
    return error


# -- the grant model and its storage ------------------------------------------------------


def test_issued_pair_is_kraken_shaped_and_never_shown(vault: Vault) -> None:
    grant = _grant(vault)
    assert re.fullmatch(r"bvg_[A-Za-z0-9_-]{52}", grant.api_key)
    assert len(base64.b64decode(grant.api_secret.reveal(), validate=True)) == 64
    assert grant.api_secret.reveal() not in repr(grant)
    assert grant.api_secret.reveal() not in json.dumps(grant.metadata())
    other = _grant(vault, "bot2")
    assert other.api_key != grant.api_key and other.api_secret != grant.api_secret


def test_grants_are_sealed_records_not_entries(keys: Keys, vault: Vault) -> None:
    grant = _grant(vault)
    assert [e.name for e in vault.list(retired=True)] == sorted(ENTRIES)
    assert len(vault) == len(ENTRIES) and "grant:bot" not in vault
    with pytest.raises(NotFoundError):
        vault.get("grant:bot")
    # Encrypted: neither the key nor the secret is in the file's bytes.
    raw = keys.path.read_bytes()
    assert grant.api_key.encode() not in raw and grant.api_secret.reveal().encode() not in raw
    with Vault.open(keys.path, PASSPHRASE) as again:
        assert get_grant(again, "bot") == grant
        assert get_grant(again, "bot").api_secret == grant.api_secret


def test_grants_survive_passphrase_change_and_restore(keys: Keys, vault: Vault) -> None:
    grant = _grant(vault)
    vault.change_passphrase("another long passphrase for this")
    before_edit = vault.generation
    vault.edit("spot", note="changed")
    vault.restore(before_edit)
    with Vault.open(keys.path, "another long passphrase for this") as again:
        assert again.get("spot").note == ""
        restored = get_grant(again, "bot")
        assert restored == grant and restored.revoked_at is None


@pytest.mark.parametrize(("entry", "general", "withdrawal"), [
    ("spot-ro", "full", "none"),
    ("spot", "full", "full"),
    ("spot-ro", "read-only", "full"),
])
def test_never_above_the_entry(vault: Vault, entry: str, general: str, withdrawal: str) -> None:
    with pytest.raises(ScopeError):
        _grant(vault, entry=entry, general=general, withdrawal=withdrawal)
    assert list_grants(vault) == []


def test_refused_grants(vault: Vault) -> None:
    with pytest.raises(InvalidInputError):
        _grant(vault, general="none")
    with pytest.raises(InvalidInputError):
        _grant(vault, entry="gen")
    with pytest.raises(NotFoundError):
        _grant(vault, entry="missing")
    with pytest.raises(InvalidInputError):
        _grant(vault, "Bad Name")
    with pytest.raises(InvalidInputError):
        _grant(vault, expires_in=0)
    vault.rotate("spot", api_key="PUBSPOTNEXT", api_secret=b64secret())
    with pytest.raises(ScopeError, match="retired"):
        _grant(vault, entry="spot.retired-1")
    assert list_grants(vault) == []


def test_one_active_grant_per_bot_a_revoked_one_is_replaced(vault: Vault) -> None:
    first = _grant(vault)
    with pytest.raises(AlreadyExistsError):
        _grant(vault)
    revoke_grant(vault, "bot")
    second = _grant(vault)
    assert second.api_key != first.api_key
    assert [g.bot for g in list_grants(vault)] == ["bot"]


# -- grant_resolve ------------------------------------------------------------------------


def test_resolve_answers_the_target(ops: Agent, vault: Vault) -> None:
    grant = _grant(vault, entry="fut", expires_in=3600)
    answer = _ok(ops.handle({"op": "grant_resolve", "grant_key": grant.api_key}))
    assert answer["grant"] == "bot" and answer["entry"] == "fut"
    assert answer["exchange"] == "kraken-futures"
    assert answer["key_id"] == key_id("kraken-futures", PUBKEY["fut"])
    assert answer["expires_at"] == 2_000_000_000.0 + 3600
    assert "api_secret" not in json.dumps(answer) and grant.api_secret.reveal() not in \
        json.dumps(answer)


@pytest.mark.parametrize("grant_key", ["", "bvg_" + "A" * 52, "PUBSPOTKEY", "bvg_x", 7])
def test_resolve_unknown(ops: Agent, vault: Vault, grant_key: object) -> None:
    _grant(vault)
    error = _error(ops.handle({"op": "grant_resolve", "grant_key": grant_key}))
    if isinstance(grant_key, str):
        assert (error["type"], error["reason"]) == ("GrantError", "unknown")
    else:
        assert error["type"] == "InvalidInputError"


def test_revocation_by_another_process_is_effective_at_once(ops: Agent, keys: Keys,
                                                            vault: Vault) -> None:
    grant = _grant(vault)
    _ok(ops.handle({"op": "grant_resolve", "grant_key": grant.api_key}))
    with Vault.open(keys.path, PASSPHRASE) as other:  # as `botvault grant revoke` does
        revoke_grant(other, "bot")
    for op in ({"op": "grant_resolve", "grant_key": grant.api_key},
               _spot_request(grant, BALANCE, "nonce=1")):
        assert _error(ops.handle(op))["reason"] == "revoked"


def test_expiry_follows_the_wall_clock(ops: Agent, vault: Vault, wall: Clock) -> None:
    grant = _grant(vault, expires_in=60)
    _ok(ops.handle({"op": "grant_resolve", "grant_key": grant.api_key}))
    wall.now += 60
    assert _error(ops.handle({"op": "grant_resolve", "grant_key": grant.api_key})
                  )["reason"] == "expired"
    assert _error(ops.handle(_spot_request(grant, BALANCE, "nonce=1")))["reason"] == "expired"


def test_entry_removed_makes_the_grant_orphaned(ops: Agent, vault: Vault) -> None:
    grant = _grant(vault, entry="spot-wd", withdrawal="full")
    vault.remove("spot-wd")
    assert _error(ops.handle({"op": "grant_resolve", "grant_key": grant.api_key})
                  )["reason"] == "orphaned"


# -- grant_sign: Spot ---------------------------------------------------------------------


def test_spot_form_real_nonce_once_real_signature(ops: Agent, keys: Keys, vault: Vault) -> None:
    grant = _grant(vault)
    body = "nonce=5&pair=XBTUSD&type=buy&ordertype=limit&price=1.10&volume=0.01"
    seen = []
    for _ in range(3):  # the bot's own nonce never increases: that is the point
        answer = _ok(ops.handle(_spot_request(grant, ADD, body)))
        fields = parse_qsl(answer["body"], keep_blank_values=True)
        assert [k for k, _ in fields].count("nonce") == 1
        assert answer["body"] == f"nonce={answer['nonce']}&pair=XBTUSD&type=buy&" \
                                 "ordertype=limit&price=1.10&volume=0.01"
        assert answer["headers"] == {
            "API-Key": PUBKEY["spot"],
            "API-Sign": sign_spot(keys.secrets["spot"], ADD, answer["nonce"], answer["body"])}
        assert (answer["entry"], answer["grant"]) == ("spot", "bot")
        seen.append(answer["nonce"])
    assert seen == sorted(set(seen)) and seen[0] > 5


def test_spot_without_a_nonce_is_refused_as_replayable(ops: Agent, vault: Vault) -> None:
    # Kraken refuses a Spot request without a nonce; one signed without could be replayed.
    grant = _grant(vault)
    for body, content_type in (("asset=XBT", "form"), ("{}", "json")):
        refused = _error(ops.handle(_spot_request(grant, BALANCE, body, nonce_text="",
                                                  content_type=content_type)))
        assert refused["reason"] == "stale"


def test_spot_json_nonce_set_once_numbers_kept_exactly(ops: Agent, keys: Keys,
                                                       vault: Vault) -> None:
    grant = _grant(vault)
    body = '{"pair": "XBTUSD", "nonce": 17, "price": 1.10, "volume": 1e-3, "flags": [1, 2.50]}'
    answer = _ok(ops.handle(_spot_request(grant, ADD, body, content_type="json")))
    nonce = answer["nonce"]
    assert answer["body"] == (f'{{"nonce":{nonce},"pair":"XBTUSD","price":1.10,'
                              '"volume":1e-3,"flags":[1,2.50]}')
    assert answer["headers"]["API-Sign"] == sign_spot(keys.secrets["spot"], ADD, nonce,
                                                      answer["body"])
    text = _ok(ops.handle(_spot_request(grant, ADD, '{"nonce": "17"}', content_type="json")))
    assert json.loads(text["body"]) == {"nonce": str(text["nonce"])}


@pytest.mark.parametrize(("body", "content_type"), [
    ("nonce=1&nonce=2", "form"),
    ("nonce=1&%6Eonce=2", "form"),
    ('{"nonce": 1, "nonce": 2}', "json"),
    ('{"nonce": 1.5}', "json"),
    ("nonce=-1", "form"),
    ("[1, 2]", "json"),
    ("{" * 5000, "json"),
    ('{"a": NaN, "nonce": 1}', "json"),
])
def test_ambiguous_or_malformed_bodies_are_refused(ops: Agent, vault: Vault, body: str,
                                                   content_type: str) -> None:
    grant = _grant(vault)
    error = _error(ops.handle(_spot_request(grant, ADD, body, content_type=content_type,
                                            nonce_text="1")))
    assert error["type"] == "InvalidInputError"


def test_bad_signature_refused_before_any_nonce(ops: Agent, vault: Vault) -> None:
    grant = _grant(vault)
    before = vault.peek_nonce("spot")[0]
    request = _spot_request(grant, ADD, "nonce=1&pair=XBTUSD")
    for change in ({"body": "nonce=1&pair=ETHUSD"}, {"path": "/0/private/CancelAll"},
                   {"signature": sign_spot_text(b64secret(), ADD, "1", "nonce=1&pair=XBTUSD")},
                   {"signature": ""}, {"signature": "\udcff"}):
        error = _error(ops.handle({**request, **change}))
        assert (error["type"], error["reason"]) == ("GrantError", "signature")
    assert vault.peek_nonce("spot")[0] == before


# The fixtures hold one agent and one grant for every example: nothing they change matters.
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(alphabet="abcdefgh=&%0123456789+", max_size=40))
def test_signature_binds_the_exact_body(ops: Agent, vault: Vault, body: str) -> None:
    grant = list_grants(vault)[0] if list_grants(vault) else _grant(vault)
    signed_for = "nonce=1&pair=XBTUSD"
    request = _spot_request(grant, BALANCE, signed_for)
    answer = ops.handle({**request, "body": body})
    assert answer["ok"] is (body == signed_for)


def test_endpoint_beyond_the_grant_is_a_scope_error(ops: Agent, vault: Vault) -> None:
    grant = _grant(vault, general="read-only")
    assert _ok(ops.handle(_spot_request(grant, BALANCE, "nonce=1")))
    assert _error(ops.handle(_spot_request(grant, ADD, "nonce=1&pair=XBTUSD"))
                  )["type"] == "ScopeError"
    assert _error(ops.handle(_spot_request(grant, "/0/private/Withdraw", "nonce=1"))
                  )["type"] == "ScopeError"


def test_entry_narrowed_after_the_grant_narrows_the_grant(ops: Agent, vault: Vault) -> None:
    grant = _grant(vault, general="full")
    vault.edit("spot", general="read-only")
    assert _error(ops.handle(_spot_request(grant, ADD, "nonce=1&pair=XBTUSD"))
                  )["type"] == "ScopeError"


def test_withdrawal_needs_grant_entry_and_agent(keys: Keys, vault: Vault, wall: Clock) -> None:
    grant = _grant(vault, entry="spot-wd", withdrawal="full")
    none = _grant(vault, "bot-none", entry="spot-wd", withdrawal="none")
    request = _spot_request(grant, "/0/private/Withdraw", "nonce=1&asset=XBT")
    plain = _agent(keys, wall)
    allowed = _agent(keys, wall, allow_withdrawal=True)
    try:
        assert _error(plain.handle(request))["type"] == "ScopeError"
        assert _ok(allowed.handle(request))
        assert _error(allowed.handle(_spot_request(none, "/0/private/Withdraw",
                                                   "nonce=1&asset=XBT")))["type"] == "ScopeError"
    finally:
        plain.close()
        allowed.close()


@pytest.mark.parametrize("path", ["/0/private/Withdr%61w", "/0/private/withdraw",
                                  "/0/private/SomethingNew"])
def test_a_grant_without_withdrawal_never_reaches_an_unknown_endpoint(
        keys: Keys, vault: Vault, wall: Clock, path: str) -> None:
    """Even when the entry can withdraw and the agent allows withdrawals: an endpoint the
    tables do not know might move funds (a server may decode or fold it into Withdraw)."""
    none = _grant(vault, "bot-none", entry="spot-wd", withdrawal="none")
    allowed = _agent(keys, wall, allow_withdrawal=True)
    try:
        refused = _error(allowed.handle(_spot_request(none, path, "nonce=1&asset=XBT")))
        assert refused["type"] == "ScopeError"
    finally:
        allowed.close()


def test_rotated_entry_answers_changed(ops: Agent, vault: Vault) -> None:
    grant = _grant(vault)
    old_target = key_id("kraken-spot", PUBKEY["spot"])
    vault.rotate("spot", api_key="PUBSPOTNEWKEY", api_secret=b64secret())
    request = _spot_request(grant, BALANCE, "nonce=1", target=old_target)
    assert _error(ops.handle(request))["reason"] == "changed"
    fresh = _ok(ops.handle({"op": "grant_resolve", "grant_key": grant.api_key}))
    again = _spot_request(grant, BALANCE, "nonce=1", target=fresh["key_id"])
    assert _ok(ops.handle(again))["headers"]["API-Key"] == "PUBSPOTNEWKEY"


def test_malformed_arguments(ops: Agent, vault: Vault) -> None:
    grant = _grant(vault)
    request = _spot_request(grant, BALANCE, "nonce=1")
    for change in ({"content_type": "xml"}, {"body": None}, {"signature": 1},
                   {"method": "GET"}):
        assert _error(ops.handle({**request, **change}))["type"] == "InvalidInputError"
    missing = dict(request)
    del missing["key_id"]
    assert _error(ops.handle(missing))["type"] == "InvalidInputError"


# -- grant_sign: Futures ------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/derivatives/api/v3/openpositions", ""),
    ("POST", "/derivatives/api/v3/sendorder",
     "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=1&limitPrice=1.5"),
    ("GET", "/derivatives/api/v3/fills", "lastFillTime=2020-01-01T00:00:00.000Z"),
])
@pytest.mark.parametrize("nonce_header", ["", "ms", "10ns"])
def test_futures_real_nonce_header_and_authent(ops: Agent, keys: Keys, vault: Vault,
                                               method: str, path: str, body: str,
                                               nonce_header: str) -> None:
    # None (as ccxt sends), milliseconds, or 10 ns ticks (python-kraken-sdk).
    nonce_header = {"": "", "ms": str(next(_FRESH)),
                    "10ns": str(next(_FRESH) * 100_000)}[nonce_header]
    grant = _grant(vault, entry="fut")
    request = {"op": "grant_sign", "grant_key": grant.api_key, "path": path, "method": method,
               "body": body, "nonce_header": nonce_header, "content_type": "form",
               "signature": sign_futures(grant.api_secret, path, nonce_header, body),
               "key_id": key_id("kraken-futures", PUBKEY["fut"])}
    answer = _ok(ops.handle(request))
    nonce = answer["nonce"]
    assert answer["body"] == body
    assert answer["headers"] == {
        "APIKey": PUBKEY["fut"], "Nonce": str(nonce),
        "Authent": sign_futures(keys.secrets["fut"], path, nonce, body)}
    bad = {**request, "nonce_header": nonce_header + "7"}
    assert _error(ops.handle(bad))["reason"] == "signature"


# -- sign-only ----------------------------------------------------------------------------


def test_sign_only_refuses_every_secret_bearing_op(keys: Keys, vault: Vault,
                                                   wall: Clock) -> None:
    grant = _grant(vault)
    ops = _agent(keys, wall, sign_only=True)
    try:
        assert _ok(ops.handle({"op": "status"}))["sign_only"] is True
        for request in ({"op": "get", "name": "spot"}, {"op": "data_key"},
                        {"op": "sign", "name": "spot", "path": BALANCE, "data": ""},
                        {"op": "sign_challenge", "name": "fut", "challenge": "x"},
                        {"op": "nonce", "name": "spot"}):
            error = _error(ops.handle(request))
            assert error["type"] == "ScopeError" and "--sign-only" in error["message"]
        listed = _ok(ops.handle({"op": "list"}))
        assert all(keys.secrets[e["name"]] not in json.dumps(e) for e in listed["entries"])
        assert _ok(ops.handle(_spot_request(grant, BALANCE, "nonce=1")))
        assert _ok(ops.handle({"op": "grant_resolve", "grant_key": grant.api_key}))
    finally:
        ops.close()


def test_an_ordinary_agent_says_it_is_not_sign_only(ops: Agent) -> None:
    assert _ok(ops.handle({"op": "status"}))["sign_only"] is False


# -- through a real agent -----------------------------------------------------------------


def test_grant_ops_through_a_real_agent(keys: Keys, vault: Vault) -> None:
    grant = _grant(vault, now=time.time())
    with running(keys), agent.connect() as client:
        target = client.grant_resolve(grant.api_key)
        assert target == agent.client.GrantTarget(
            "bot", "spot", "kraken-spot", key_id("kraken-spot", PUBKEY["spot"]), None)
        nonces = []
        for n in range(2):
            bot_nonce = str(int(time.time() * 1000) + n)
            body = f"nonce={bot_nonce}&pair=XBTUSD&type=buy&ordertype=market&volume=1"
            signature = sign_spot_text(grant.api_secret, ADD, bot_nonce, body)
            signed = client.grant_sign(grant.api_key, path=ADD, method="POST", body=body,
                                       signature=signature, nonce_header="",
                                       content_type="form", key_id=target.key_id)
            assert signed.headers["API-Sign"] == sign_spot(keys.secrets["spot"], ADD,
                                                           signed.nonce, signed.body)
            assert (signed.entry, signed.grant) == ("spot", "bot")
            nonces.append(signed.nonce)
        assert nonces[1] > nonces[0]
        with pytest.raises(GrantError) as replayed:  # the same bytes again
            client.grant_sign(grant.api_key, path=ADD, method="POST", body=body,
                              signature=signature, nonce_header="", content_type="form",
                              key_id=target.key_id)
        assert replayed.value.reason == "replayed"
        with pytest.raises(GrantError) as caught:
            client.grant_sign(grant.api_key, path=ADD, method="POST", body=body + "0",
                              signature=signature, nonce_header="", content_type="form",
                              key_id=target.key_id)
        assert caught.value.reason == "signature" and caught.value.exit_code == 3
        with pytest.raises(GrantError) as unknown:
            client.grant_resolve("bvg_" + "B" * 52)
        assert unknown.value.reason == "unknown"
        revoke_grant(vault, "bot")  # this process, as the CLI would: the agent sees it at once
        with pytest.raises(GrantError) as revoked:
            client.grant_resolve(grant.api_key)
        assert revoked.value.reason == "revoked"


def test_real_sign_only_agent_hands_out_nothing(keys: Keys, vault: Vault) -> None:
    grant = _grant(vault, entry="fut", now=time.time())
    with running(keys, sign_only=True), agent.connect() as client:
        assert client.status()["sign_only"] is True
        with pytest.raises(ScopeError):
            client.credentials("spot")
        with pytest.raises(ScopeError):
            client.data_key()
        with pytest.raises(ScopeError):
            client.sign("spot", BALANCE)
        with pytest.raises(ScopeError):
            client.sign_challenge("fut", "challenge")
        target = client.grant_resolve(grant.api_key)
        path = "/derivatives/api/v3/accounts"
        signed = client.grant_sign(grant.api_key, path=path, method="GET", body="",
                                   signature=sign_futures(grant.api_secret, path, "", ""),
                                   nonce_header="", content_type="form", key_id=target.key_id)
        assert signed.headers["Authent"] == sign_futures(keys.secrets["fut"], path,
                                                         signed.nonce, "")


def test_export_carries_the_grants_of_the_exported_entries(vault: Vault, tmp_path: Path
                                                           ) -> None:
    from botvault.export import export_entries, read_export

    kept = _grant(vault, "bot", entry="spot")
    _grant(vault, "other", entry="fut")
    revoke_grant(vault, "bot")
    target = export_entries(vault, tmp_path / "out.bv", "export passphrase long enough",
                            only=["spot"])
    with Vault.open(target, "export passphrase long enough") as exported:
        (copy,) = list_grants(exported)
        assert copy.bot == "bot" and copy.api_key == kept.api_key
        assert copy.api_secret == kept.api_secret and copy.revoked_at is not None
    assert [e.name for e in read_export(target, "export passphrase long enough")] == ["spot"]


def test_in_process_signing_with_a_grant_against_a_sign_only_agent(keys: Keys,
                                                                   vault: Vault) -> None:
    spot = _grant(vault, "spot-bot", entry="spot", now=time.time())
    fut = _grant(vault, "fut-bot", entry="fut", now=time.time())
    with running(keys, sign_only=True), agent.connect() as client:
        signed = client.sign_with_grant(spot.api_key, spot.api_secret, ADD,
                                        {"pair": "XBTUSD", "volume": "1"})
        assert signed.body == f"nonce={signed.nonce}&pair=XBTUSD&volume=1"
        assert signed.headers["API-Sign"] == sign_spot(keys.secrets["spot"], ADD,
                                                       signed.nonce, signed.body)
        path = "/derivatives/api/v3/sendorder"
        signed = client.sign_with_grant(fut.api_key, fut.api_secret, path, "symbol=PF_XBTUSD")
        assert signed.headers["Authent"] == sign_futures(keys.secrets["fut"], path,
                                                         signed.nonce, "symbol=PF_XBTUSD")
        with pytest.raises(GrantError) as caught:
            client.sign_with_grant(spot.api_key, b64secret(), BALANCE)
        assert caught.value.reason == "signature"


def test_a_grant_never_moves_to_another_key_of_that_name(ops: Agent, vault: Vault) -> None:
    grant = _grant(vault)
    vault.remove("spot")
    vault.add("spot", exchange="kraken-spot", api_key="PUBOTHERACCOUNT",
              api_secret=b64secret(), general="full", withdrawal="none")
    assert _error(ops.handle({"op": "grant_resolve", "grant_key": grant.api_key})
                  )["reason"] == "orphaned"
    renamed = _grant(vault, "bot2", entry="fut")
    vault.rename("fut", "fut-old")
    vault.add("fut", exchange="kraken-futures", api_key="PUBFUTOTHER", api_secret=b64secret(),
              general="full", withdrawal="none")
    # It stays with its own pair, now labelled fut-old; the new "fut" is another pair.
    answer = _ok(ops.handle({"op": "grant_resolve", "grant_key": renamed.api_key}))
    assert (answer["entry"], answer["key_id"]) == ("fut-old", key_id("kraken-futures",
                                                                     PUBKEY["fut"]))


def test_a_grant_follows_its_entry_through_rotations(ops: Agent, vault: Vault) -> None:
    grant = _grant(vault)
    for n in range(2):
        vault.rotate("spot", api_key=f"PUBSPOTROTATED{n}", api_secret=b64secret())
        answer = _ok(ops.handle({"op": "grant_resolve", "grant_key": grant.api_key}))
        assert answer["key_id"] == key_id("kraken-spot", f"PUBSPOTROTATED{n}")


def test_restoring_a_backup_never_revives_a_grant(ops: Agent, keys: Keys, vault: Vault
                                                  ) -> None:
    first = _grant(vault, "bot")
    kept = _grant(vault, "kept")
    before_revoke = vault.generation
    revoke_grant(vault, "bot")
    replaced = _grant(vault, "bot")  # a new pair for the bot after its old one leaked
    vault.restore(before_revoke)
    for key in (first.api_key, replaced.api_key):
        assert _error(ops.handle({"op": "grant_resolve", "grant_key": key}))["reason"] in (
            "revoked", "unknown")
    assert _ok(ops.handle({"op": "grant_resolve", "grant_key": kept.api_key}))
    with Vault.open(keys.path, PASSPHRASE) as again:
        assert get_grant(again, "bot").api_key == first.api_key
        assert get_grant(again, "bot").revoked_at is not None
        assert [e.name for e in again.list()] == sorted(ENTRIES)  # entries restored as before


# -- pieces: the JSON nonce, the wire form of GrantError -----------------------------------

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=6), _JSON_VALUES, max_size=5),
       nonce=st.integers(min_value=0, max_value=2**64 - 1), indent=st.sampled_from([None, 2]))
def test_json_nonce_is_set_once_and_nothing_else_changes(doc: dict[str, Any], nonce: int,
                                                         indent: int | None) -> None:
    from botvault.agent.signing import spot_json_with_nonce

    body = json.dumps(doc, indent=indent)
    out = spot_json_with_nonce(body, nonce)
    pairs = json.loads(out, object_pairs_hook=list)
    old = doc.get("nonce")
    was_number = isinstance(old, (int, float)) and not isinstance(old, bool)
    as_text = "nonce" in doc and not was_number  # the bot's type is kept: text stays text
    assert [k for k, _ in pairs].count("nonce") == 1
    assert list(pairs[0]) == ["nonce", str(nonce) if as_text else nonce]
    expected = {k: v for k, v in doc.items() if k != "nonce"}
    assert {k: v for k, v in json.loads(out).items() if k != "nonce"} == expected


def test_grant_error_crosses_the_wire_with_its_reason() -> None:
    from botvault.agent.protocol import AgentError, error_response, raise_for_error

    for reason in sorted(GrantError.REASONS):
        response = error_response(GrantError(reason, "refused"))
        with pytest.raises(GrantError) as caught:
            raise_for_error(response)
        assert caught.value.reason == reason and caught.value.exit_code == 3
    forged = {"ok": False, "error": {"type": "GrantError", "message": "x", "reason": "bogus"}}
    with pytest.raises(AgentError):
        raise_for_error(forged)
    with pytest.raises(ValueError, match="unknown grant error reason"):
        GrantError("bogus")

"""The pieces of sharing a key through etcd that need no cluster: the settings, the secrets
they keep out of argv and reprs, and the agent's `nonce_floor` (the real agent)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from typer.testing import CliRunner

from botvault import Vault
from botvault.agent import socket_path_for
from botvault.cli.main import app
from botvault.errors import InsecurePermissionsError, InvalidInputError
from botvault.exchanges.kraken import sign_spot
from botvault.gateway.agent_link import AsyncAgentGrants
from botvault.gateway.etcd_api import EtcdClient
from botvault.gateway.etcd_settings import EtcdSettings, parse_endpoints
from botvault.gateway.grants import GrantRefused, SignRequest
from botvault.gateway.kraken_errors import Reason
from botvault.grant_ops import add_grant
from botvault.nonces import key_id

from .agent_support import make_vault, running


@pytest.mark.parametrize("text", ["", ",", "127.0.0.1:2379", "ftp://h:1", "http://u:p@h:1",
                                  "http://h:1/v3", "http://h:1?x=1"])
def test_etcd_endpoints_are_member_urls_only(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_endpoints(text)


def test_etcd_settings_refuse_half_pairs_and_odd_ttls(tmp_path: Path) -> None:
    urls = parse_endpoints("http://127.0.0.1:1, https://10.0.0.5:2379/")
    assert urls == ("http://127.0.0.1:1", "https://10.0.0.5:2379")
    for bad in ({"cert_file": tmp_path}, {"user": "u"}, {"password_file": tmp_path},
                {"lease_ttl": 1}, {"lease_ttl": 301}):
        with pytest.raises(InvalidInputError):
            EtcdSettings(urls, **bad)


def test_the_etcd_password_comes_from_a_private_file_and_shows_nowhere(tmp_path: Path
                                                                       ) -> None:
    secret_file = tmp_path / "etcd.pass"
    secret_file.write_text("hunter2-etcd\n")
    os.chmod(secret_file, 0o644)
    settings = EtcdSettings(("http://127.0.0.1:1",), user="gw", password_file=secret_file)
    with pytest.raises(InsecurePermissionsError):
        EtcdClient(settings)
    os.chmod(secret_file, 0o600)
    client = EtcdClient(settings)
    assert "hunter2" not in repr(client) and "hunter2" not in repr(settings)
    # There is no option that takes the password itself.
    result = CliRunner().invoke(app, ["gateway", "--etcd", "http://127.0.0.1:1",
                                      "--etcd-password", "hunter2-etcd"])
    assert result.exit_code == 2 and "No such option" in result.output


def test_the_agent_signs_at_or_above_the_floor_and_keeps_its_counter_there(
        vault_path: Path) -> None:
    keys = make_vault(vault_path)
    with Vault.open_with_key(keys.path, keys.data_key) as vault:
        grant = add_grant(vault, "bot", entry="spot", general="full", withdrawal="none")
        kid = key_id(vault.get("spot").exchange, vault.get("spot").api_key)
        local = vault.next_nonce("spot")
    path = "/0/private/Balance"

    def request(floor: object, n: int) -> SignRequest:
        nonce = time.time_ns() // 1000 + n  # recent, and each its own (the replay window)
        body = urlencode({"nonce": nonce})
        return SignRequest(grant.api_key, path, "POST", body,
                           sign_spot(grant.api_secret.reveal(), path, nonce, body), "", "form",
                           kid, nonce_floor=floor)  # type: ignore[arg-type]

    async def main() -> list[object]:
        link = AsyncAgentGrants(socket_path_for(keys.path))
        out: list[object] = []
        try:
            for n, floor in enumerate((None, local + 2_000, 1, 0, -5, True, 2**63, "9")):
                try:
                    req = request(floor, n)
                    checked = await link.verify(req, exchange="kraken-spot", window=10,
                                                hold=60)
                    out.append((await link.sign(req, checked)).nonce)
                except GrantRefused as exc:
                    out.append(exc.reason)
        finally:
            link.close()
        return out

    with running(keys):
        plain, floored, low, *refused = asyncio.run(main())
    assert isinstance(plain, int) and plain > local
    assert floored == local + 2_000  # max(its next, floor): the floor
    assert isinstance(low, int) and low > floored  # a low floor changes nothing
    assert refused == [Reason.BAD_REQUEST] * 5
    with Vault.open_with_key(keys.path, keys.data_key) as vault:
        assert vault.next_nonce("spot") > low  # the counter kept the floor


def test_a_floor_is_taken_exactly_and_never_lowers_the_counter(vault_path: Path) -> None:
    """For any run of plain and floored nonces: each above the one before, at least its
    floor, and no further ahead than the larger of its floor, the last + 1, and the clock."""
    import time

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    keys = make_vault(vault_path)
    base = time.time_ns() // 1_000_000  # the entry's unit: ms

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.one_of(st.none(), st.integers(-50, 5_000)), min_size=1, max_size=8))
    def run(offsets: list[int | None]) -> None:
        with Vault.open_with_key(keys.path, keys.data_key) as vault:
            last, _ = vault.peek_nonce("spot")
            previous = last or 0
            for offset in offsets:
                floor = None if offset is None else base + offset
                got = vault.next_nonce("spot", floor)
                now = time.time_ns() // 1_000_000
                assert got > previous
                assert floor is None or got >= floor
                assert got <= max(previous + 1, floor or 0, now)
                previous = got

    run()

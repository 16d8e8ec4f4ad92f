"""etcd's own protection, as the gateway uses it: TLS with a client certificate, and a user
whose password comes from a file. A real one-member etcd; the real coordinator in process."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from botvault.gateway.coordination import CoordinationUnavailable
from botvault.gateway.etcd_api import EtcdClient, b64
from botvault.gateway.etcd_coord import EtcdCoordinator
from botvault.gateway.etcd_settings import EtcdSettings
from botvault.gateway.kraken_errors import Api
from botvault.rate_limits import Governor

from .etcd_cluster import ETCD_MISSING, SKIP_ETCD, etcd_cluster, make_tls

pytestmark = pytest.mark.skipif(SKIP_ETCD, reason=ETCD_MISSING)

KEY_ID = "0123456789abcdef0123456789abcdef"


def _one_turn(settings: EtcdSettings, vault: Path, nonce: int) -> int | None:
    """One request's turn on a key: take it, commit `nonce`; the floor it was offered."""
    async def main() -> int | None:
        coordinator = EtcdCoordinator(settings, vault, Governor("pro"))
        await coordinator.start()
        try:
            async with coordinator.hold(KEY_ID, time.monotonic() + 5) as turn:
                floor = turn.nonce_floor
                await turn.admit(Api.SPOT, "/0/private/AddOrder")
                await turn.commit(max(nonce, floor or 0))
            return floor
        finally:
            await coordinator.stop()
    return asyncio.run(main())


def _settings(url: str, timeout: float = 0.5, **kw: object) -> EtcdSettings:
    # Refusals are retried until the timeout (a member may be restarting): keep it short.
    return EtcdSettings((url,), timeout=timeout, **kw)  # type: ignore[arg-type]


def test_etcd_over_tls_needs_its_ca_and_our_client_certificate(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    vault = tmp_path / "v.bv"
    with etcd_cluster(tmp_path, size=1, tls=tls) as cluster:
        url = cluster.members[0].client_url
        assert url.startswith("https://")
        full = _settings(url, 3.0, ca_file=tls.ca, cert_file=tls.client_cert,
                         key_file=tls.client_key)
        assert _one_turn(full, vault, 1000) == 1  # the key's first turn: nothing in etcd
        assert _one_turn(full, vault, 5) == 1001  # above what the first one committed
        for partial in (_settings(url, ca_file=tls.ca),  # no client certificate
                        _settings(url, cert_file=tls.client_cert,  # the system's roots
                                  key_file=tls.client_key)):
            with pytest.raises(CoordinationUnavailable):
                _one_turn(partial, vault, 2000)
        with pytest.raises(CoordinationUnavailable):  # plain HTTP to a TLS member
            _one_turn(_settings(url.replace("https://", "http://")), vault, 2000)


def _enable_auth(url: str, password: str) -> None:
    """root (needed to enable auth) and a user `gw` allowed only under botvault/."""
    async def main() -> None:
        client = EtcdClient(_settings(url, 3.0))
        try:
            for path, doc in (
                    ("auth/role/add", {"name": "root"}),
                    ("auth/user/add", {"name": "root", "password": "root-pass"}),
                    ("auth/user/grant", {"user": "root", "role": "root"}),
                    ("auth/role/add", {"name": "bv"}),
                    ("auth/role/grant", {"name": "bv", "perm": {
                        "permType": "READWRITE", "key": b64("botvault/"),
                        "range_end": b64("botvault0")}}),
                    ("auth/user/add", {"name": "gw", "password": password}),
                    ("auth/user/grant", {"user": "gw", "role": "bv"}),
                    ("auth/enable", {})):
                await client.call(path, doc)
        finally:
            await client.close()
    asyncio.run(main())


def test_etcd_user_with_a_password_file(tmp_path: Path) -> None:
    vault = tmp_path / "v.bv"
    good, bad = tmp_path / "gw.pass", tmp_path / "wrong.pass"
    good.write_text("s3cret-etcd-pass\n")
    bad.write_text("not-it\n")
    for f in (good, bad):
        os.chmod(f, 0o600)
    with etcd_cluster(tmp_path, size=1) as cluster:
        url = cluster.members[0].client_url
        _enable_auth(url, "s3cret-etcd-pass")
        allowed = _settings(url, 3.0, user="gw", password_file=good)
        assert _one_turn(allowed, vault, 1000) == 1
        assert _one_turn(allowed, vault, 7) == 1001
        for refused in (_settings(url, user="gw", password_file=bad), _settings(url)):
            with pytest.raises(CoordinationUnavailable):
                _one_turn(refused, vault, 2000)

"""Remote bots, one gateway, TLS: `gateway tls-init`'s CA and certificate, `--tls-cert` and
`--tls-key`, and real clients (ccxt sync and async, python-kraken-sdk, krakenex) trusting the
CA the way each takes it."""

from __future__ import annotations

import http.client
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from botvault.cli.main import app
from botvault.gateway.tls_init import tls_init

from .gateway_stack import (
    Credential,
    gateway_stack,
    start_gateway,
    stop_gateway,
    tally_bots,
)

ROOT = Path(__file__).resolve().parent.parent
SPOT = {"spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"}}


def test_tls_init_makes_a_ca_and_a_server_certificate_with_private_keys(tmp_path: Path
                                                                       ) -> None:
    from cryptography import x509

    vault = tmp_path / "v.bv"
    offline = tmp_path / "usb" / "ca.key"
    result = CliRunner().invoke(app, ["gateway", "tls-init", "--vault", str(vault), "--name",
                                      "gw.example", "--name", "10.0.0.5", "--ca-key-out",
                                      str(offline)])
    assert result.exit_code == 0, result.output
    directory = tmp_path / "v.bv.tls"
    for name in ("ca.pem", "server.pem", "server.key"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(offline.stat().st_mode) == 0o600
    assert not (directory / "ca.key").exists()  # the CA's key went offline only
    assert "REQUESTS_CA_BUNDLE=" in result.output and "SSL_CERT_FILE=" in result.output
    assert "'requests_trust_env'" in result.output and "'cafile'" in result.output
    assert str(directory / "ca.pem") in result.output
    cert = x509.load_pem_x509_certificate((directory / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["gw.example"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    # A new certificate needs the CA's key: without it, refused; with it, issued by the CA.
    again = CliRunner().invoke(app, ["gateway", "tls-init", "--vault", str(vault),
                                     "--name", "gw2.example"])
    assert again.exit_code != 0 and "--ca-key" in again.output
    again = CliRunner().invoke(app, ["gateway", "tls-init", "--vault", str(vault), "--name",
                                     "gw2.example", "--ca-key", str(offline)])
    assert again.exit_code == 0, again.output
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    assert context.cert_store_stats()["x509_ca"] == 1


def test_the_gateways_own_options_are_refused_with_tls_init(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["gateway", "--listen", "10.0.0.5:8422", "tls-init",
                                      "--vault", str(tmp_path / "v.bv"), "--name", "gw"])
    assert result.exit_code == 2 and "--listen" in result.output
    assert not (tmp_path / "v.bv.tls").exists()


@pytest.mark.parametrize("name", ["", "bad name", "a..b", "x" * 64 + ".com", "ex\u00e4mple"])
def test_tls_init_refuses_what_is_no_host_name(tmp_path: Path, name: str) -> None:
    from botvault.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        tls_init(tmp_path / "v.bv", [name])
    assert not (tmp_path / "v.bv.tls" / "ca.pem").exists()


def test_no_plain_http_beyond_loopback_and_a_loose_key_is_refused(tmp_path: Path) -> None:
    vault = tmp_path / "v.bv"
    result = CliRunner().invoke(app, ["gateway", "--vault", str(vault), "--listen",
                                      "0.0.0.0:0", "--allow-remote"])
    assert result.exit_code == 2 and "without TLS" in result.output
    made = tls_init(vault, ["127.0.0.1"])
    os.chmod(made.key, 0o644)
    result = CliRunner().invoke(app, ["gateway", "--vault", str(vault), "--listen",
                                      "0.0.0.0:0", "--tls-cert", str(made.cert),
                                      "--tls-key", str(made.key)])
    assert result.exit_code == 7 and "TLS key" in result.output


def _bots(clients: list[str], url: str, creds: list[Credential], count: int, ca: Path
          ) -> list[dict[str, int]]:
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(ca), "SSL_CERT_FILE": str(ca),
           "BOT_CA": str(ca)}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.tls_clients", client, url,
                               str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT, env=env)
             for client in clients]
    return tally_bots(procs, creds)


def _https_gateway(stack: Any, vault: Path) -> tuple[subprocess.Popen[str], str, Path]:
    made = tls_init(vault, ["127.0.0.1", "localhost"])
    proc, url = start_gateway(stack.keys.path, stack.kraken.url, "--tier", "pro",
                              "--listen", "0.0.0.0:0", "--tls-cert", str(made.cert),
                              "--tls-key", str(made.key))
    assert url.startswith("https://0.0.0.0:")
    return proc, f"https://127.0.0.1:{url.rsplit(':', 1)[1]}", made.ca_cert


@pytest.mark.slow
def test_four_real_clients_over_tls_600_of_600_on_one_key(vault_path: Path) -> None:
    with gateway_stack(vault_path, entries=SPOT, latency=0.002) as stack:
        proc, url, ca = _https_gateway(stack, vault_path)
        try:
            grants = [stack.grant(f"bot{i}", "spot") for i in range(4)]
            tallies = _bots(["ccxt", "ccxt-async", "sdk", "krakenex"], url, grants, 150, ca)
            assert tallies == [{"ok": 150}] * 4
            assert stack.kraken.accepted() == 600 and stack.kraken.rejected() == {}
            assert stack.kraken.max_in_flight(stack.real("spot").api_key) == 1
            # python-kraken-sdk's async client (aiohttp) takes the CA from SSL_CERT_FILE.
            assert _bots(["sdk-async"], url, [grants[0]], 3, ca) == [{"ok": 3}]
        finally:
            stop_gateway(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    print(f"over TLS: {sum(t['ok'] for t in tallies)}/600 accepted")


def test_a_client_without_the_ca_and_plain_http_get_nothing_through(vault_path: Path
                                                                   ) -> None:
    with gateway_stack(vault_path, entries=SPOT) as stack:
        proc, url, ca = _https_gateway(stack, vault_path)
        try:
            grant = stack.grant("bot", "spot")
            # krakenex and ccxt with the public roots (certifi's, their default): refused.
            import certifi

            tallies = _bots(["krakenex", "ccxt-async"], url, [grant, grant], 2,
                            Path(certifi.where()))
            assert all("ok" not in t for t in tallies), tallies
            # Plain HTTP to the TLS port: no answer a client could take, nothing forwarded.
            conn = http.client.HTTPConnection(url.removeprefix("https://"), timeout=10)
            conn.request("POST", "/0/private/Balance", "nonce=1",
                         {"API-Key": grant.api_key, "API-Sign": "x"})
            with pytest.raises((http.client.HTTPException, ConnectionError)):
                conn.getresponse()
            conn.close()
            assert stack.kraken.accepted() == 0 and stack.kraken.rejected() == {}
            # The same client with the CA goes through.
            assert _bots(["krakenex"], url, [grant], 1, ca) == [{"ok": 1}]
        finally:
            stop_gateway(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

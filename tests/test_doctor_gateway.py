"""Doctor warns about a gateway whose port another local user could take while it is down
(issue 17, must hold 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from botvault.doctor import check_gateway_port
from botvault.doctor.gateway_units import unprivileged_port_start


def _unit(home: Path, name: str, text: str) -> Path:
    units = home / ".config" / "systemd" / "user"
    units.mkdir(parents=True, exist_ok=True)
    path = units / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("exec_start", "port"), [
    ("%h/.local/bin/botvault gateway --tier intermediate", 8422),
    ("/usr/bin/env botvault gateway --listen 127.0.0.1:9000", 9000),
    ("botvault gateway --listen=[::1]:9001", 9001),
])
def test_a_gateway_unit_without_a_socket_unit_is_warned_about(tmp_path: Path, exec_start: str,
                                                             port: int) -> None:
    service = _unit(tmp_path, "botvault-gateway.service",
                    f"[Service]\nExecStart={exec_start}\nRestart=on-failure\n")
    (finding,) = check_gateway_port(tmp_path, port_start=1024)
    assert finding.severity == "warn" and str(port) in finding.title
    assert finding.where == (str(service),) and "botvault-gateway.socket" in (finding.fix or "")


def test_socket_activation_or_a_privileged_port_is_fine(tmp_path: Path) -> None:
    _unit(tmp_path, "botvault-gateway.service", "[Service]\nExecStart=botvault gateway\n")
    _unit(tmp_path, "botvault-gateway.socket", "[Socket]\nListenStream=127.0.0.1:8422\n")
    _unit(tmp_path, "low.service", "[Service]\nExecStart=botvault gateway --listen 127.0.0.1:80\n")
    _unit(tmp_path, "bot.service", "[Service]\nExecStart=botvault run bot -- ./bot.sh\n")
    assert check_gateway_port(tmp_path, port_start=1024) == []
    assert check_gateway_port(tmp_path / "nowhere") == []


def test_the_unprivileged_port_start_is_read_from_the_kernel() -> None:
    start = unprivileged_port_start()
    proc = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert start == (int(proc.read_text()) if proc.exists() else 1024)

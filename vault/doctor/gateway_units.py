"""Doctor: a gateway whose port another local user could take while it is down.

A gateway that binds its port itself leaves the port free whenever it is not running
(restart, upgrade, boot order): another local user can bind it then and collect the bots'
requests (grant-signed, so never replayable through botvault, but its answers are believed).
With systemd socket activation the port is held by systemd throughout. Ports below the
kernel's unprivileged-port start cannot be bound by other users at all.

Looks at the user's systemd units (`~/.config/systemd/user/*.service`) that run
`botvault gateway`, and warns for each that has no `.socket` unit beside it and listens on
a port any user may bind.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from .finding import Finding

__all__ = ["check_gateway_port", "unprivileged_port_start"]

_DEFAULT_PORT = 8422  # botvault.gateway.config.DEFAULT_PORT (not imported: no aiohttp here)
_EXEC = re.compile(r"^\s*ExecStart\s*=\s*(.+)$", re.MULTILINE)
_PORT_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")


def unprivileged_port_start() -> int:
    """The lowest port any user may bind (Linux: a sysctl; elsewhere 1024)."""
    try:
        return int(_PORT_START.read_text().strip())
    except (OSError, ValueError):
        return 1024


def _listen_port(command: str) -> int | None:
    """The port of a `botvault gateway` command line, or None when it is none."""
    try:
        words = shlex.split(command.lstrip("-@:+!"))
    except ValueError:
        return None
    if "gateway" not in words or not any(w.endswith("botvault") for w in words):
        return None
    port = _DEFAULT_PORT
    for i, word in enumerate(words):
        value = None
        if word == "--listen" and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith("--listen="):
            value = word.split("=", 1)[1]
        if value is not None:
            tail = value.rpartition(":")[2]
            port = int(tail) if tail.isdigit() else port
    return port


def check_gateway_port(home: Path, *, port_start: int | None = None) -> list[Finding]:
    units = home / ".config" / "systemd" / "user"
    start = unprivileged_port_start() if port_start is None else port_start
    findings: list[Finding] = []
    try:
        services = sorted(units.glob("*.service"))
    except OSError:
        return findings
    for service in services:
        try:
            text = service.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        ports = [p for m in _EXEC.finditer(text) if (p := _listen_port(m.group(1))) is not None]
        if not ports or service.with_suffix(".socket").exists():
            continue
        for port in ports:
            if port == 0 or port < start:
                continue
            findings.append(Finding(
                "gateway-port", "warn",
                f"the gateway's port {port} is free for any user while it is down",
                f"{service.name} runs botvault gateway, which binds port {port} itself: "
                "between a stop and a start another local user can bind it and receive "
                "your bots' requests",
                f"hold the port with systemd: add {service.with_suffix('.socket').name} "
                f"(ListenStream=127.0.0.1:{port}) and start that instead (see the docs)",
                (str(service),)))
    return findings

"""aiohttp (etcd's client) stays off the import path of every command but `gateway --etcd`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .agent_support import make_vault, running


def _imported(args: list[str], env: dict[str, str] | None = None) -> set[str]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "botvault", *args],
                            capture_output=True, text=True, timeout=60, check=False,
                            env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_version_and_run_do_not_import_aiohttp(vault_path: Path) -> None:
    assert "aiohttp" not in _imported(["--version"])
    keys = make_vault(vault_path)
    with running(keys):
        env = {**os.environ, "BOTVAULT_PATH": str(keys.path)}
        modules = _imported(["run", "spot", "--", sys.executable, "-c", "pass"], env)
    assert "botvault.handover.execution" in modules  # the command really ran
    assert not {m for m in modules if m.split(".")[0] in ("aiohttp", "yarl", "multidict")}
    assert "botvault.gateway" not in modules


def test_gateway_help_does_not_import_aiohttp() -> None:
    modules = _imported(["gateway", "--help"])  # --help builds no server
    assert "botvault.cli.main" in modules  # the command line was really loaded
    assert not {m for m in modules if m.split(".")[0] in ("aiohttp", "yarl", "multidict")}


def test_a_gateway_without_etcd_does_not_import_aiohttp() -> None:
    # aiohttp is etcd's client only (`gateway --etcd`); the server is the gateway's own.
    code = ("import sys, botvault.gateway.server\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'yarl')))\n"
            "import botvault.gateway.etcd_coord\n"
            "print('aiohttp' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.splitlines() == ["[]", "True"]  # and etcd's path does load it

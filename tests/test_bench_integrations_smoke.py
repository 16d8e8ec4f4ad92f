"""Smoke test: bench/bench_integrations.py runs to the end in --quick mode (no timing
assertions; the 600/600 must-hold itself is tests/test_integrations_order.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "bench_integrations.py"


@pytest.mark.slow
def test_quick_bench_exits_0_and_prints_the_summary() -> None:
    pytest.importorskip("ccxt")
    pytest.importorskip("krakenex")
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only",
                             "ccxt-kraken,krakenex"], capture_output=True, text=True,
                            timeout=300, check=False, cwd=SCRIPT.parent.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "## botvault integrations benchmark summary" in result.stdout
    botvault_rows = [line for line in result.stdout.splitlines() if "| botvault |" in line]
    assert len(botvault_rows) == 2
    assert all("| 40/40 |" in row and row.endswith("| met |") for row in botvault_rows)

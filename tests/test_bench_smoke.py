"""Smoke test: the benchmark script runs to the end in --quick mode. No timing assertions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_vault import SUMMARY_HEADER

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "bench_vault.py"


@pytest.mark.slow
def test_quick_bench_exits_0_and_prints_the_summary() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True,
                            text=True, timeout=300, check=False, cwd=SCRIPT.parent.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert SUMMARY_HEADER in result.stdout


@pytest.mark.slow
def test_quick_gateway_bench_exits_0_and_prints_the_summary() -> None:
    from bench.bench_gateway import SUMMARY_HEADER as GATEWAY_HEADER

    out = _quick_run("bench.bench_gateway")
    assert GATEWAY_HEADER in out and "rejections at the exchange: none" in out


@pytest.mark.slow
def test_quick_gateway_edges_bench_exits_0_and_prints_the_summary() -> None:
    from bench.bench_gateway_edges import SUMMARY_HEADER as EDGES_HEADER

    out = _quick_run("bench.bench_gateway_edges")
    assert EDGES_HEADER in out and "rejections at the exchange: none" in out


@pytest.mark.slow
def test_quick_floor_bench_exits_0_and_prints_the_summary() -> None:
    # The floor prototype needs the `bench` extra (uvloop, httptools); CI installs it.
    pytest.importorskip("httptools")
    from bench.bench_floor import SUMMARY_HEADER as FLOOR_HEADER

    result = subprocess.run([sys.executable, "-m", "bench.bench_floor", "--quick"],
                            capture_output=True, text=True, timeout=300, check=False,
                            cwd=SCRIPT.parent.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert FLOOR_HEADER in result.stdout and "gateway added p50 / floor added p50" in \
        result.stdout


@pytest.mark.slow


def test_quick_floods_bench_exits_0_and_prints_the_ratios() -> None:
    out = _quick_run("bench.bench_floods")
    assert "K's bot vs L's" in out and "replay window" in out
    assert "rejections at the exchange: none" in out
def test_quick_policy_bench_exits_0_and_prints_the_summary() -> None:
    from bench.bench_policy import SUMMARY_HEADER as POLICY_HEADER

    out = _quick_run("bench.bench_policy")
    assert POLICY_HEADER in out and "rejections at the exchange: none" in out


def _quick_run(module: str) -> str:
    """`python -m MODULE --quick` from the repository root: its output, once it exits 0."""
    result = subprocess.run([sys.executable, "-m", module, "--quick"], capture_output=True,
                            text=True, timeout=300, check=False, cwd=SCRIPT.parent.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout

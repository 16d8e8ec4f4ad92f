"""Smoke test: bench/bench_etcd.py runs to the end in --quick mode. No timing assertions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .etcd_cluster import ETCD_MISSING, SKIP_ETCD

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(SKIP_ETCD, reason=ETCD_MISSING)
def test_quick_etcd_bench_exits_0_and_prints_the_summary() -> None:
    from bench.bench_etcd import SUMMARY_HEADER

    result = subprocess.run([sys.executable, "-m", "bench.bench_etcd", "--quick"],
                            capture_output=True, text=True, timeout=300, check=False,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert SUMMARY_HEADER in result.stdout and "rejections at the exchange: none" in result.stdout
    assert "added by the etcd path" in result.stdout

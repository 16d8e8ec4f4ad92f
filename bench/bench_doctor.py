"""Benchmark: `doctor`'s plaintext scan is linear in the size of the file it reads.

Run from the repository root with the project's interpreter:

    python bench/bench_doctor.py            # 5 MiB shell history, the secret on 45,000 lines
    python bench/bench_doctor.py --quick    # 1 MiB, 9,000 lines

The scan (`check_plaintext_copies`) is timed against a baseline measured in the same run on
the same file: one `bytes.find` pass over it per needle plus one newline count, the least
any scan that reports file:line must do. The ratio scan / baseline is what is reported; it
stays small and the same whatever the file size when the scan is linear. (Before the fix the
line of each hit was counted from the start of the file: 139 s for the full file.) Nothing
fails on wall-clock time; the script exits 0 unless something is broken.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from botvault.doctor import check_plaintext_copies
from botvault.entries import Entry
from botvault.scopes import General, Withdrawal
from botvault.secret import Secret

TARGET_RATIO = 20.0  # scan / baseline: a linear scan stays within a small constant


def _history(path: Path, secret: str, size: int, hits: int) -> None:
    """A shell history of about `size` bytes with the secret on `hits` lines, spread out."""
    hit = f"export KRAKEN_API_SECRET={secret}\n".encode()
    filler = b"ls -la /tmp/xyz\n"
    lines = max(0, size - hits * len(hit)) // len(filler)
    per, extra = divmod(lines, hits)
    path.write_bytes((hit + filler * per) * hits + filler * extra)


def _baseline(data: bytes, needle: bytes) -> tuple[int, int]:
    """(hits, lines): every occurrence found, and the newlines counted once."""
    found = 0
    start = data.find(needle)
    while start >= 0:
        found += 1
        start = data.find(needle, start + 1)
    return found, data.count(b"\n")


def _median(fn: object, repeat: int) -> float:
    assert callable(fn)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 MiB and 9,000 lines")
    parser.add_argument("--repeat", type=int, default=3, help="runs per median")
    args = parser.parse_args(argv)
    size, hits = ((1 << 20), 9_000) if args.quick else ((5 << 20), 45_000)
    secret = base64.b64encode(os.urandom(64)).decode()
    entry = Entry(name="bot", exchange="kraken-spot", api_key="PUB", api_secret=Secret(secret),
                  general=General.FULL, withdrawal=Withdrawal.NONE)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        history = home / ".bash_history"
        _history(history, secret, size, hits)
        data = history.read_bytes()
        cwd = home / "empty"
        cwd.mkdir()
        scan_s = _median(lambda: check_plaintext_copies([entry], home, cwd), args.repeat)
        (finding,) = check_plaintext_copies([entry], home, cwd)
        # One needle: base64 is the same raw and escaped in JSON, so doctor has one too.
        base_s = _median(lambda: _baseline(data, secret.encode()), args.repeat)
    ratio = scan_s / base_s if base_s else float("inf")
    print("## botvault doctor benchmark")
    print(f"command: python bench/bench_doctor.py{' --quick' if args.quick else ''}")
    print(f"file: {len(data) / (1 << 20):.1f} MiB shell history, secret on "
          f"{len(finding.where):,} lines (expected {hits:,})")
    print(f"doctor plaintext scan: {scan_s * 1000:.1f} ms (median of {args.repeat})")
    print(f"baseline (find every hit + count newlines): {base_s * 1000:.1f} ms")
    print(f"scan / baseline: {ratio:.1f}x (target <= {TARGET_RATIO:g}x: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'})")
    return 0 if len(finding.where) == hits else 1


if __name__ == "__main__":
    sys.exit(main())

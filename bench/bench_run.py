"""How long `botvault run NAME -- true` takes with the agent, against `import typer`.

    python bench/bench_run.py [--quick]

Creates a scratch vault (floor KDF), unlocks it with a real agent, then times the whole
command (start Python, reach the agent, fetch the key, check scope, exec `true`) against
`python -c "import typer"` with the same interpreter, in the same run. Target: <= 1.5x.
The agent is locked at the end whatever happens.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSPHRASE = "bench passphrase for timing runs"
FLOOR = ("--kdf-memory", "19", "--kdf-iterations", "2", "--kdf-parallelism", "1")
TARGET = 1.5


def _botvault() -> list[str]:
    exe = shutil.which("botvault", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from botvault.cli.main import main; main()"]


def _timed_pair(first: list[str], second: list[str], env: dict[str, str], runs: int
                ) -> tuple[float, float]:
    """Medians of both commands, their runs interleaved: on a noisy machine a load that comes
    and goes then weighs on both alike, and the ratio stays meaningful."""
    for argv in (first, second, first, second):  # warm the page cache
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for argv, into in ((first, samples[0]), (second, samples[1])):
            start = time.perf_counter()
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                           check=True)
            into.append(time.perf_counter() - start)
    return statistics.median(samples[0]), statistics.median(samples[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    runs = 5 if parser.parse_args().quick else 21
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Path(tmp) / "run"
        runtime.mkdir(mode=0o700)
        env = {**os.environ, "BOTVAULT_PATH": str(Path(tmp) / "v" / "vault.bv"),
               "XDG_RUNTIME_DIR": str(runtime)}
        cli = _botvault()
        secret = base64.b64encode(os.urandom(64)).decode()
        passfile = Path(tmp) / "passphrase"
        passfile.write_text(f"{PASSPHRASE}\n")
        passfile.chmod(0o600)
        # Standard input is the secret alone for --secret-stdin; the passphrase is a file.
        steps = [(["init", *FLOOR, "--passphrase-file", str(passfile)], ""),
                 (["add", "bot", "--exchange", "kraken-futures", "--api-key", "KEY",
                   "--general", "full", "--withdrawal", "none", "--secret-stdin",
                   "--passphrase-file", str(passfile)], f"{secret}\n"),
                 (["unlock", "--ttl", "10m", "--passphrase-file", str(passfile)], "")]
        for args, stdin in steps:
            subprocess.run([*cli, *args], input=stdin, text=True, env=env, check=True,
                           capture_output=True)
        try:
            run, typer = _timed_pair([*cli, "run", "bot", "--", "true"],
                                     [sys.executable, "-c", "import typer"], env, runs)
        finally:
            subprocess.run([*cli, "lock"], env=env, capture_output=True, check=False)
    ratio = run / typer
    print("| measure | figure | target | met |")
    print("|---|---|---|---|")
    print(f"| `botvault run NAME -- true` (agent), median of {runs} | {run * 1000:.1f} ms | | |")
    print(f"| `python -c \"import typer\"`, median of {runs} | {typer * 1000:.1f} ms | | |")
    print(f"| ratio | {ratio:.2f}x | <= {TARGET}x | {'met' if ratio <= TARGET else 'NOT met'} |")


if __name__ == "__main__":
    main()

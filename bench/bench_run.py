"""How long `botvault run NAME -- true` and `botvault --version` take, against `import typer`.

    python bench/bench_run.py [--quick]

Creates a scratch vault (floor KDF), unlocks it with a real agent, then times the whole
`run` command (start Python, reach the agent, fetch the key, check scope, exec `true`) and
`--version` against `python -c "import typer"` with the same interpreter, their runs
interleaved, twice: precompiled (bytecode caches written, the package compiled first) and
from source (every module compiled on each start: PYTHONDONTWRITEBYTECODE and an empty
PYTHONPYCACHEPREFIX, for all three alike). Target (issue 22): each <= 1.3x. The agent is locked
at the end
whatever happens.
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
TARGET = 1.3


def _botvault() -> list[str]:
    exe = shutil.which("botvault", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from botvault.cli.main import main; main()"]


def _timed(commands: list[list[str]], env: dict[str, str], runs: int) -> list[float]:
    """Median wall time of each command, their runs interleaved: on a noisy machine a load
    that comes and goes then weighs on all alike, and the ratios stay meaningful."""
    for argv in commands * 2:  # warm the page cache
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for argv, into in zip(commands, samples, strict=True):
            start = time.perf_counter()
            # No timeout=: with one, Popen.wait polls with sleeps that distort the figures.
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                           check=True)
            into.append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


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
        commands = [[*cli, "run", "bot", "--", "true"], [*cli, "--version"],
                    [sys.executable, "-c", "import typer"]]
        # Precompiled: bytecode caches written (a shell with PYTHONDONTWRITEBYTECODE=1 would
        # otherwise compile botvault's modules on every start) and the package compiled.
        compiled_env = {k: v for k, v in env.items()
                        if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
        import botvault

        subprocess.run([sys.executable, "-m", "compileall", "-q",
                        str(Path(botvault.__file__).parent)], env=compiled_env, check=True,
                       stdout=subprocess.DEVNULL)
        source_env = {**env, "PYTHONDONTWRITEBYTECODE": "1",
                      "PYTHONPYCACHEPREFIX": str(Path(tmp) / "empty-pycache")}
        try:
            figures = {"precompiled": _timed(commands, compiled_env, runs),
                       "from source": _timed(commands, source_env, max(3, runs // 3))}
        finally:
            subprocess.run([*cli, "lock"], env=env, capture_output=True, check=False)
    print("| mode | `run NAME -- true` | `--version` | `import typer` | run / typer | "
          "--version / typer | target |")
    print("|---|---|---|---|---|---|---|")
    for mode, (run, version, typer) in figures.items():
        ratios = (run / typer, version / typer)
        verdict = "met" if max(ratios) <= TARGET else "NOT met"
        print(f"| {mode} | {run * 1000:.1f} ms | {version * 1000:.1f} ms | "
              f"{typer * 1000:.1f} ms | {ratios[0]:.2f}x | {ratios[1]:.2f}x | "
              f"<= {TARGET}x: {verdict} |")


if __name__ == "__main__":
    main()

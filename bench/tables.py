"""What the benchmarks share: the one table format they print (aligned columns under a
title), and the gateway benchmarks' command line, private home and closing verdict."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["bench_home", "exchange_verdict", "print_table", "quick_args", "quick_parser"]


@contextlib.contextmanager
def bench_home(prefix: str) -> Iterator[Path]:
    """A temporary folder for one run, its `run/` (mode 0700) the agents' XDG_RUNTIME_DIR."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        os.environ["XDG_RUNTIME_DIR"] = str(root / "run")
        (root / "run").mkdir(mode=0o700)
        yield root


def quick_parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring's first line, and `--quick`."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def quick_args(doc: str | None, quick_help: str, argv: list[str] | None
               ) -> argparse.Namespace:
    return quick_parser(doc, quick_help).parse_args(argv)


def exchange_verdict(out: Callable[[str], None], rejected: Mapping[str, int]) -> bool:
    """Prints what the Kraken stand-in refused; a run passes only when it refused nothing."""
    out(f"rejections at the exchange: {rejected or 'none'}")
    return not rejected


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    print(f"\n{title}")
    print("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))

"""The version: the one place it is written (pyproject.toml reads it from here).

A constant, not a package-metadata lookup: `importlib.metadata` scans every installed
distribution, which made `botvault --version` about 1.5x `import typer` (bench/bench_run.py).
"""

__version__ = "0.2.0"

__all__ = ["__version__"]

""""Did you mean …" for a mistyped command or entry name: one rule for both."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["close_matches", "did_you_mean", "did_you_mean_hint"]


def close_matches(word: str, known: Iterable[str]) -> list[str]:
    """Up to three of `known` close to `word`, closest first."""
    return difflib.get_close_matches(word, list(known), n=3, cutoff=0.6)


def _listed(close: list[str]) -> str:
    return " or ".join(repr(c) for c in close) + "?"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """` Did you mean 'x'?` (with a leading space), or "" when nothing is close."""
    close = close_matches(word, known)
    return " Did you mean " + _listed(close) if close else ""


def did_you_mean_hint(word: str, known: Iterable[str], otherwise: str) -> str:
    """`did you mean 'x'?` as a hint, or `otherwise` when nothing is close."""
    close = close_matches(word, known)
    return "did you mean " + _listed(close) if close else otherwise

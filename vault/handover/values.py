"""Checks on the values and assignments handed over, shared by rendering and `run`."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InvalidInputError
from .names import validate_var_name


def _check_value(var: str, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"the value of {var} must be a str")
    if "\x00" in value:
        raise InvalidInputError(
            f"the value of {var} contains a NUL byte; environment variables cannot hold NUL",
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"the value of {var} is not valid text (it holds a lone surrogate)",
        ) from None


def check_assignments(assignments: Sequence[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for var, value in assignments:
        validate_var_name(var)
        if var in seen:
            raise InvalidInputError(
                f"{var} would be set twice",
                hint="give one of the entries its own variable names (a per-entry override)",
            )
        seen.add(var)
        _check_value(var, value)


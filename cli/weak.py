"""A new passphrase (vault, export): refused when too short, confirmed at a terminal when it is
one attackers try first, refused without a terminal unless --allow-weak-passphrase."""

from __future__ import annotations

from typing import Annotated

import typer

from . import output
from .passphrase import interactive

__all__ = ["AllowWeakOpt", "GenerateOpt", "checked_new_passphrase"]

AllowWeakOpt = Annotated[bool, typer.Option(
    "--allow-weak-passphrase", help="Accept a new passphrase attackers try first (a famous "
    "example, a keyboard walk, a repeat) without a terminal to confirm it.")]
GenerateOpt = Annotated[bool, typer.Option(
    "--generate-passphrase", help="Make up a random 6-word passphrase and print it once.")]


def checked_new_passphrase(passphrase: str, *, allow_weak: bool) -> str:
    from botvault.errors import InvalidInputError
    from botvault.passphrase_policy import check_new_passphrase, tried_first

    for warning in check_new_passphrase(passphrase):
        output.warn(warning)
    reason = tried_first(passphrase)
    if reason is None or allow_weak:
        return passphrase
    if not interactive():
        raise InvalidInputError(f"this passphrase is one attackers try first: {reason}",
                                hint="choose another (e.g. --generate-passphrase), or pass "
                                     "--allow-weak-passphrase to keep it anyway")
    output.before_prompt()
    output.warn(f"this passphrase is one attackers try first: {reason}")
    if not typer.confirm("Use it anyway?", default=False, err=True):
        raise InvalidInputError("passphrase not accepted; nothing was changed",
                                hint="run the command again with another passphrase")
    return passphrase

"""`--yes` or a question at the terminal, for commands that remove or replace something."""

from __future__ import annotations

from typing import Annotated

import typer

from . import output
from .passphrase import interactive

__all__ = ["YesOpt", "confirm", "refuse_without_terminal"]

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def refuse_without_terminal(yes: bool, refusal: str, hint: str | None = None) -> None:
    """Without --yes the question needs a terminal: refused before anything is asked for
    (the passphrase) or changed."""
    if not yes and not interactive():
        from botvault.errors import InvalidInputError

        raise InvalidInputError(refusal, hint=hint)


def confirm(yes: bool, question: str, refusal: str, hint: str | None = None) -> None:
    """Go on with --yes or a "y" at the terminal; stop (exit 1, click's Abort) on "n"."""
    refuse_without_terminal(yes, refusal, hint)
    if not yes:
        output.before_prompt()
        typer.confirm(question, abort=True, err=True)  # prompts go to the terminal, not stdout

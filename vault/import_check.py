"""Plaintext key files (.env, ccxt, freqtrade) read into entries for `import`: every key
checked as `add` checks it, all problems reported together, and nothing imported unless
every key passes."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from .entries import Entry
from .errors import InvalidInputError
from .importers import Candidate

__all__ = ["PLAINTEXT_FORMATS", "entries_from", "read_plaintext", "with_scopes"]

PLAINTEXT_FORMATS = ("env", "ccxt", "freqtrade")


def read_plaintext(file: Path, format_: str, *, key_var: str | None = None,
                   secret_var: str | None = None) -> list[Candidate]:
    """The key pairs found in `file`; InvalidInputError when there is none."""
    from . import importers

    if format_ == "env":
        found = importers.read_env(file, key_var=key_var, secret_var=secret_var)
    elif format_ == "ccxt":
        found = importers.read_ccxt(file)
    elif format_ == "freqtrade":
        found = importers.read_freqtrade(file)
    else:
        raise InvalidInputError(f"unknown plaintext format {format_!r}",
                                hint=f"one of {', '.join(PLAINTEXT_FORMATS)}")
    if not found:
        raise InvalidInputError(f"no key pair found in {file}",
                                hint="for .env files name the variables with --key-var and "
                                     "--secret-var")
    return found


def entries_from(found: list[Candidate], *, name: str | None, exchange: str | None,
                 source: Path) -> list[Entry]:
    """One entry per candidate (`name`, then `name-2`, ...; else the name the file gives),
    each checked as `add` would, before any scope is asked for: scopes are "none" here
    (`with_scopes` sets what the user says), and each entry records the file it came from
    (its absolute path) for doctor. What was repaired or noted is warned (UserWarning) with
    the place it came from; every problem is raised at once, or none."""
    from .entry_rules import new_entry

    entries: list[Entry] = []
    problems: list[tuple[str, str]] = []  # (where, what)
    notes: list[str] = []
    for i, cand in enumerate(found, start=1):
        entry_name = (f"{name}-{i}" if i > 1 else name) if name else cand.name
        profile = exchange or cand.exchange
        if not entry_name:
            problems.append((cand.source, "no name for this key (pass --name NAME)"))
            continue
        if not profile:
            problems.append((cand.source, "the file does not say which exchange it is for "
                                          "(pass --exchange)"))
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                entries.append(new_entry(
                    entry_name, exchange=profile, api_key=cand.api_key,
                    api_secret=cand.api_secret, general="none", withdrawal="none",
                    note=f"imported from {cand.source}").with_changes(
                        imported_from=os.path.abspath(source)))
        except InvalidInputError as exc:
            problems.append((cand.source, exc.message))
            continue
        notes += [f"{cand.source}: {note}"
                  for note in [*cand.notes, *(str(w.message) for w in caught)]]
    for note in notes:  # outside catch_warnings, so the caller's filters see them
        warnings.warn(note, UserWarning, stacklevel=2)
    hint = "fix the file (or pass --name / --exchange) and run the import again"
    if len(problems) == 1:
        (where, what), = problems
        raise InvalidInputError(f"{what} ({where}); nothing was imported", hint=hint)
    if problems:
        raise InvalidInputError(
            f"{len(problems)} problems in the file; nothing was imported:\n  "
            + "\n  ".join(f"{where}: {what}" for where, what in problems), hint=hint)
    return entries


def with_scopes(entries: list[Entry], general: str, withdrawal: str) -> list[Entry]:
    """The entries with the scopes the user chose on the exchange's key form."""
    from .scopes import parse_general, parse_withdrawal

    scope, can_withdraw = parse_general(general), parse_withdrawal(withdrawal)
    return [e.with_changes(general=scope, withdrawal=can_withdraw) for e in entries]

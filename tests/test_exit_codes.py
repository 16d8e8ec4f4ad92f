"""One table of exit codes: every error class maps into it, and `--help` and docs/commands.md
list it."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from botvault import errors
from botvault.cli.main import app
from botvault.cli.output import OS_ERROR_EXIT

COMMANDS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "commands.md"


def test_every_error_class_has_a_documented_code() -> None:
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.VaultError)]
    assert {c.exit_code for c in classes} <= set(errors.EXIT_CODES)
    assert OS_ERROR_EXIT in errors.EXIT_CODES
    # 1 is a bug: only the base (never raised) and using a closed object (a caller's bug).
    assert {c for c in classes if c.exit_code == 1} == {errors.VaultError, errors.ClosedError}


def test_help_lists_every_code() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for code, meaning in errors.EXIT_CODES.items():
        assert f"{code} {meaning}" in text, code


def test_commands_page_lists_every_code_in_its_table() -> None:
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", COMMANDS_PAGE.read_text(), flags=re.M)
    assert {int(code) for code, _ in rows} == set(errors.EXIT_CODES)

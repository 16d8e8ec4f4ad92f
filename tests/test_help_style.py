"""Issue 16, point 8: no help line cut mid-sentence, one help style for every command group
(grant included: no Rich boxes, no `<str>`), and `botvault man` in a pager at a terminal with
an EXAMPLES section."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from botvault.cli.grant_cmds import grant_app
from botvault.cli.help_cmds import EXAMPLES, first_sentence
from botvault.cli.main import _COMMANDS, app
from tests.test_cli_tty import Terminal

runner = CliRunner()
GRANT = tuple(typer.main.get_command(grant_app).commands)  # type: ignore[attr-defined]


def _help(*argv: str) -> str:
    result = runner.invoke(app, [*argv, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout


def _listing(text: str) -> dict[str, str]:
    """The `Commands:` section (up to the blank line that ends it, before the shared
    options' epilog): each command and its whole (re-joined) line."""
    lines = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    found: dict[str, str] = {}
    last = ""
    for line in lines:
        if line.startswith("  ") and not line.startswith("   "):
            last, _, rest = line.strip().partition(" ")
            found[last] = rest.strip()
        elif line.strip() and last:
            found[last] += " " + line.strip()
    return found


def test_first_sentence_is_not_cut_at_an_abbreviation() -> None:
    assert first_sentence("Relabel an entry, e.g. after a change.\n\nMore.") == \
        "Relabel an entry, e.g. after a change."
    assert first_sentence("One.  Two.") == "One."
    assert first_sentence("No stop at all") == "No stop at all"


@pytest.mark.parametrize("group", [(), ("grant",)], ids=["botvault", "grant"])
def test_no_listing_line_is_cut(group: tuple[str, ...]) -> None:
    listed = _listing(_help(*group))
    assert set(listed) == (set(GRANT) if group else set(_COMMANDS))
    for name, line in listed.items():
        assert not line.endswith("..."), (name, line)
        assert line.endswith((".", ")", "`", "]")), (name, line)
    if not group:
        assert "fix its secret in place" in listed["edit"]


@pytest.mark.parametrize("argv", [(name,) for name in _COMMANDS] +
                         [("grant", name) for name in GRANT])
def test_one_help_style_for_every_command(argv: tuple[str, ...]) -> None:
    text = _help(*argv)
    assert text.startswith("Usage: botvault ")
    for rich in ("╭", "│", "<str>", "<int>", "<float", "<path>"):
        assert rich not in text, (argv, rich)
    assert "{" not in text.split("\n", 1)[0], argv  # Typer's {NAME} in the usage line


def test_grant_add_shows_its_choices() -> None:
    text = _help("grant", "add")
    assert "--general <read-only|full>" in text and "--withdrawal <none|full>" in text


def test_man_piped_is_roff_with_examples() -> None:
    done = subprocess.run([sys.executable, "-m", "botvault", "man"], capture_output=True,
                          check=True)
    page = done.stdout.decode()
    assert page.startswith(".TH BOTVAULT 1")
    assert ".SH EXAMPLES" in page and ".B botvault init" in page
    assert page.index(".SH EXAMPLES") < page.index(".SH COMMANDS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a pty and man")
def test_man_at_a_terminal_opens_the_formatted_manual_in_the_pager(tmp_path: object) -> None:
    env = {**os.environ, "TERM": "dumb", "COLUMNS": "100", "MANPAGER": "cat",
           "PAGER": "cat", "MANWIDTH": "100"}
    term = Terminal(["man"], env)
    assert term.wait() == 0
    shown = re.sub(rb".\x08", b"", term.seen).decode()  # man's overstrike bold, undone
    assert "EXAMPLES" in shown and EXAMPLES[0][0] in shown
    assert "Usage: botvault add" in shown
    assert ".TH BOTVAULT" not in shown and ".SS " not in shown  # formatted, not roff

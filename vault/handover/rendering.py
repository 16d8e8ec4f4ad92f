"""Rendering for `botvault env`: sh, dotenv and json output."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from ..errors import InvalidInputError
from .values import check_assignments

__all__ = ["FORMATS", "Format", "render"]

Format = Literal["sh", "dotenv", "json"]
FORMATS: tuple[Format, ...] = ("sh", "dotenv", "json")


def render(assignments: Sequence[tuple[str, str]], fmt: Format) -> str:
    """Text for `botvault env`: one assignment a line, each line ending in a newline.

    sh
        `export VAR='value'`, single-quoted with every `'` written as `'\\''`. Inside single
        quotes bash, dash and zsh take every byte literally ($, backticks, backslashes,
        newlines, CR, `!`), so `eval "$(botvault env NAME)"` sets exactly the value. `!` is
        safe even when the output is pasted into an interactive shell with history
        expansion on: single quotes stop it too (and `eval` never history-expands); control
        characters, though, are at the terminal's mercy when pasted, so eval it. A value
        starting with `-` cannot become an option: the word starts with the name. No quote
        is ever followed directly by another, so zsh's RC_QUOTES option changes nothing.
        The text is UTF-8; eval it in a UTF-8 or C locale.
    dotenv
        `VAR="value"` for python-dotenv and docker compose, see `_dotenv_line` for the
        subset that both read back identically and what is refused.
    json
        One object, variables in the given order (`ensure_ascii=False`).
    """
    check_assignments(assignments)
    if fmt == "sh":
        return "".join(f"export {var}={_sh_quote(value)}\n" for var, value in assignments)
    if fmt == "dotenv":
        return "".join(_dotenv_line(var, value) for var, value in assignments)
    if fmt == "json":
        return json.dumps(dict(assignments), ensure_ascii=False) + "\n"
    raise InvalidInputError(
        f"unknown format {fmt!r}", hint="use one of " + ", ".join(FORMATS),
    )


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


_DOTENV_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def _dotenv_line(var: str, value: str) -> str:
    """One `VAR="value"` line in the subset python-dotenv and docker compose agree on.

    Encoding: double quotes; `\\` -> `\\\\`, `"` -> `\\"`, LF -> `\\n`, CR -> `\\r` (a raw CR
    would become LF when Python reads the file in text mode). Everything else, tabs and
    other control characters included, is written as is: older compose releases turn `\\t`
    into a plain `t`.

    Refused, because some reader would return something else:
    - `$` anywhere. compose interpolates `$VAR` and `${VAR}` in double-quoted values and
      reads `$$` and `\\$` as `$`; python-dotenv interpolates `${VAR}` in every value and
      has no escape for it. No spelling survives both.
    - a value ending in `\\` or `"`. compose-go before v2.x's escape-aware scanner takes a
      quote preceded by a backslash as escaped, so the closing quote after `\\\\` is missed;
      the oldest releases also strip every trailing `"` before unescaping.
    - a variable name starting with `export`: old compose strips that prefix from the key
      even without the space that python-dotenv and newer compose require.
    Not covered: `docker run --env-file` and systemd's EnvironmentFile, which take values
    verbatim and would keep the quotes; use `botvault run` there.
    """
    if "$" in value:
        raise InvalidInputError(
            f"the value of {var} contains '$', which dotenv readers expand differently",
            hint="use --format sh or json, or botvault run",
        )
    if value.endswith(("\\", '"')):
        raise InvalidInputError(
            f"the value of {var} ends in a backslash or a double quote, which some dotenv "
            "readers misparse",
            hint="use --format sh or json, or botvault run",
        )
    if var.startswith("export"):
        raise InvalidInputError(
            f"{var} starts with 'export', which some dotenv readers strip from the name",
            hint="choose another variable name for this entry",
        )
    return f'{var}="{value.translate(_DOTENV_ESCAPES)}"\n'


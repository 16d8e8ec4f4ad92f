"""Handing a key to a bot: variable names, `env` output, and the exec behind `run`.

Pure library: nothing here reads the vault, prompts or prints. The CLI resolves an entry,
asks `var_names` which variables to use, then either prints `render(...)` (`botvault env`)
or calls `exec_command(argv, child_env(os.environ, ...))` (`botvault run`).

Values are `str`. Every function that puts a value somewhere refuses a NUL byte (execve and
the shells cannot carry one) and lone surrogates (not text, cannot be encoded), and no
error message ever contains a value: only the variable's name and what is wrong.
"""

from __future__ import annotations

from .execution import CommandNotExecutableError, CommandNotFoundError, child_env, exec_command
from .names import default_var_names, validate_var_name, var_names
from .presets import PRESETS, Preset
from .rendering import FORMATS, Format, render

__all__ = [
    "FORMATS",
    "PRESETS",
    "CommandNotExecutableError",
    "CommandNotFoundError",
    "Format",
    "Preset",
    "child_env",
    "default_var_names",
    "exec_command",
    "render",
    "validate_var_name",
    "var_names",
]

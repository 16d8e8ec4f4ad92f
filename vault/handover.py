"""Handing a key to a bot: variable names, `env` output, and the exec behind `run`.

Pure library: nothing here reads the vault, prompts or prints. The CLI resolves an entry,
asks `var_names` which variables to use, then either prints `render(...)` (`botvault env`)
or calls `exec_command(argv, child_env(os.environ, ...))` (`botvault run`).

Values are `str`. Every function that puts a value somewhere refuses a NUL byte (execve and
the shells cannot carry one) and lone surrogates (not text, cannot be encoded), and no
error message ever contains a value: only the variable's name and what is wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, NoReturn

from .errors import InvalidInputError

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

Format = Literal["sh", "dotenv", "json"]
FORMATS: tuple[Format, ...] = ("sh", "dotenv", "json")


# --- presets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """Fixed variable names a bot or library reads for an exchange key pair."""

    name: str
    key_var: str
    secret_var: str
    description: str
    source: str


def _presets(*presets: Preset) -> Mapping[str, Preset]:
    return MappingProxyType({preset.name: preset for preset in presets})


# Only names read from the process environment belong here: a bot that takes its keys from
# a config file or its own store (hummingbot, OctoBot) or reads a .env file rather than the
# environment (jesse's ENV_VALUES come from dotenv_values('.env')) would ignore `run`.
# Name, key variable and secret variable are positional because ruff's S106 takes a
# `secret_var=` keyword for a hard-coded password.
PRESETS: Mapping[str, Preset] = _presets(
    Preset(
        "freqtrade",
        "FREQTRADE__EXCHANGE__KEY",
        "FREQTRADE__EXCHANGE__SECRET",
        description="freqtrade: exchange.key / exchange.secret through FREQTRADE__ variables",
        source=(
            "freqtrade docs, 'Configure the bot' > Environment variables "
            "(docs/configuration.md) and freqtrade/configuration/environment_vars.py: "
            "FREQTRADE__ prefix, '__' separates nesting levels"
        ),
    ),
    Preset(
        "kraken-sdk-spot",
        "KRAKEN_SPOT_API_KEY",
        "KRAKEN_SPOT_SECRET_KEY",
        description="python-kraken-sdk command line, `kraken spot` (also its kraken-mcp server)",
        source=(
            "btschwertfeger/python-kraken-sdk kraken/cli.py (click auto_envvar_prefix "
            "'KRAKEN', options --api-key/--secret-key on `spot`) and tests/cli/conftest.py"
        ),
    ),
    Preset(
        "kraken-sdk-futures",
        "KRAKEN_FUTURES_API_KEY",
        "KRAKEN_FUTURES_SECRET_KEY",
        description="python-kraken-sdk command line, `kraken futures` (also its kraken-mcp server)",
        source=(
            "btschwertfeger/python-kraken-sdk kraken/cli.py (click auto_envvar_prefix "
            "'KRAKEN', options --api-key/--secret-key on `futures`) and tests/cli/conftest.py"
        ),
    ),
    Preset(
        "nautilus-kraken-spot",
        "KRAKEN_SPOT_API_KEY",
        "KRAKEN_SPOT_API_SECRET",
        description="NautilusTrader Kraken adapter, Spot",
        source=(
            "nautechsystems/nautilus_trader nautilus_trader/adapters/kraken/config.py "
            "(KrakenDataClientConfig/KrakenExecClientConfig docstrings, 2026) and "
            "nautilus_kraken KrakenCredential::from_env_spot; the first 2025 releases of "
            "the adapter read KRAKEN_API_KEY/KRAKEN_API_SECRET instead"
        ),
    ),
    Preset(
        "nautilus-kraken-futures",
        "KRAKEN_FUTURES_API_KEY",
        "KRAKEN_FUTURES_API_SECRET",
        description="NautilusTrader Kraken adapter, Futures (live)",
        source=(
            "nautechsystems/nautilus_trader nautilus_trader/adapters/kraken/config.py "
            "(docstrings, 2026) and nautilus_kraken KrakenCredential::from_env_futures"
        ),
    ),
    Preset(
        "nautilus-kraken-futures-demo",
        "KRAKEN_FUTURES_DEMO_API_KEY",
        "KRAKEN_FUTURES_DEMO_API_SECRET",
        description="NautilusTrader Kraken adapter, Futures demo environment",
        source=(
            "nautilus_trader docs, integrations/kraken 'Demo environment setup', and "
            "nautilus_kraken KrakenCredential::from_env_futures(demo=true)"
        ),
    ),
)


# --- names -------------------------------------------------------------------------------

_PORTABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Names a child (or the shell that evals `env --format sh`) treats as configuration rather
# than data: setting one to a secret would load code, reroute lookups or traffic, or change
# who the process is. Compared upper-cased, because zsh ties lower-case `path`, `fpath`,
# `cdpath`... to the upper-case variables, and proxies are read in both cases.
_DENY_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        # glibc's list of variables it drops for setuid programs (sysdeps/generic/unsecvars.h)
        "the C library and the dynamic loader read it",
        ("GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN",
         "LOCPATH", "MALLOC_TRACE", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS",
         "TMPDIR", "TZDIR"),
    ),
    (
        "it controls command lookup or the process identity",
        ("PATH", "HOME", "SHELL", "USER", "LOGNAME", "USERNAME", "PWD", "OLDPWD", "CDPATH",
         "UID", "EUID", "GID", "EGID", "PPID", "_"),
    ),
    (
        "the shell reads it at start-up or runs code from it",
        ("ENV", "IFS", "SHELLOPTS", "BASHOPTS", "GLOBIGNORE", "PS1", "PS2", "PS3", "PS4",
         "PROMPT", "PROMPT_COMMAND", "RPROMPT", "RPS1", "ZDOTDIR", "FPATH", "MODULE_PATH",
         "MANPATH", "MAILPATH", "MAIL", "HISTFILE", "TMOUT", "FIGNORE", "PSVAR", "COMMANDS",
         "FUNCTIONS", "ALIASES", "GALIASES", "SALIASES", "OPTIONS", "BUILTINS", "MAPFILE",
         "TERMINFO", "TERMCAP"),
    ),
    (
        # Found by exporting a value through `eval` under every variable a fresh bash, dash
        # and zsh (all modules loaded) define: these did not come back as given, because
        # the shell treats them as numbers (bash evaluates arithmetic in RANDOM and OPTIND),
        # read-only, or as one of zsh's special parameters. tests/test_handover.py re-checks.
        "bash or zsh gives it a special meaning, so `eval` would not set it as given",
        ("SHLVL", "OPTIND", "OPTARG", "LINENO", "RANDOM", "SRANDOM", "SECONDS", "HISTCMD",
         "MAILCHECK", "ARGV", "ARGC", "STATUS", "PIPESTATUS", "PARAMETERS", "BASHPID",
         "DIRSTACK", "EPOCHREALTIME", "EPOCHSECONDS", "EPOCHTIME", "GROUPS", "COLUMNS",
         "LINES", "FUNCNEST", "HISTCHARS", "HISTSIZE", "SAVEHIST", "KEYBOARD_HACK",
         "KEYTIMEOUT", "LISTMAX", "LOGCHECK", "TRY_BLOCK_ERROR", "TRY_BLOCK_INTERRUPT",
         "TTYIDLE", "DIS_ALIASES", "DIS_BUILTINS", "DIS_FUNCTIONS", "DIS_FUNCTIONS_SOURCE",
         "DIS_GALIASES", "DIS_PATCHARS", "DIS_RESWORDS", "DIS_SALIASES", "ERRNOS",
         "FUNCFILETRACE", "FUNCSOURCETRACE", "FUNCSTACK", "FUNCTIONS_SOURCE", "FUNCTRACE",
         "HISTORY", "HISTORYWORDS", "JOBDIRS", "JOBSTATES", "JOBTEXTS", "KEYMAPS", "LANGINFO",
         "MODULES", "NAMEDDIRS", "PATCHARS", "RESWORDS", "SIGNALS", "SYSPARAMS", "USERDIRS",
         "USERGROUPS", "WATCH", "WIDGETS", "ZLE_BRACKETED_PASTE"),
    ),
    (
        "an interpreter loads code or options from it",
        ("PERL5LIB", "PERL5OPT", "PERLLIB", "PERL5DB", "RUBYLIB", "RUBYOPT", "NODE_OPTIONS",
         "NODE_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
         "LUA_INIT", "LUA_PATH", "LUA_CPATH"),
    ),
    (
        "it reroutes network traffic or changes which certificates are trusted",
        ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "FTP_PROXY", "SSL_CERT_FILE",
         "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"),
    ),
)
_DENIED_NAMES: Mapping[str, str] = MappingProxyType(
    {name: reason for reason, names in _DENY_GROUPS for name in names}
)
_DENIED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("LD_", "the dynamic loader reads LD_* variables"),
    ("DYLD_", "the macOS dynamic loader reads DYLD_* variables"),
    ("BASH_", "bash reads BASH_* variables (BASH_ENV runs a file at start-up)"),
    ("ZSH_", "zsh reserves ZSH_* variables"),
    ("ZCURSES_", "zsh's curses module reserves ZCURSES_* variables"),
    ("BOTVAULT_", "BOTVAULT_* variables configure botvault itself"),
)
# PYTHONPATH, PYTHONSTARTUP, PYTHONHOME, PYTHONUSERBASE, PYTHONBREAKPOINT, PYTHONWARNINGS...
# all of CPython's own variables are PYTHON followed by letters, with no underscore, so a
# key named PYTHON_BOT_API_KEY stays allowed.
_PYTHON_OWN = re.compile(r"PYTHON[A-Z0-9]*")

_DENY_HINT = (
    "use the name the bot reads its key from (see the --as presets) or set a per-entry "
    "override; a child process treats this variable as configuration, not as a key"
)


def validate_var_name(name: str) -> str:
    """Return `name` if it is a portable variable name that hijacks nothing.

    Portable means POSIX `[A-Za-z_][A-Za-z0-9_]*`: every shell can assign it and it needs no
    quoting. Refused too, compared case-insensitively: names a child reads as configuration
    (PATH, LD_*, DYLD_*, PYTHONPATH and the other PYTHON* variables, BASH_ENV, ENV, IFS,
    HOME, SHELL, proxies, CA bundles...), BOTVAULT_*, and the special parameters of bash
    and zsh that `eval "$(botvault env ...)"` would not set as given (RANDOM, LINES,
    zsh's `signals`...). Raises InvalidInputError saying which rule refused the name.
    """
    if not isinstance(name, str) or not _PORTABLE_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid environment variable name {name!r}: use letters, digits and "
            "underscores, not starting with a digit",
        )
    reason = _denial_reason(name.upper())
    if reason is not None:
        raise InvalidInputError(
            f"environment variable name {name!r} is refused: {reason}", hint=_DENY_HINT,
        )
    return name


def _denial_reason(upper: str) -> str | None:
    if upper in _DENIED_NAMES:
        return _DENIED_NAMES[upper]
    for prefix, reason in _DENIED_PREFIXES:
        if upper.startswith(prefix):
            return reason
    if _PYTHON_OWN.fullmatch(upper):
        return "the Python interpreter reads PYTHON* variables"
    return None


_PROFILE_NAMES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "kraken-futures": ("KRAKEN_FUTURES_API_KEY", "KRAKEN_FUTURES_API_SECRET"),
    "kraken-spot": ("KRAKEN_API_KEY", "KRAKEN_API_SECRET"),
})


def default_var_names(exchange: str, entry_name: str) -> tuple[str, str]:
    """The profile's (key variable, secret variable) for an entry.

    Kraken profiles have fixed names. `generic` derives them from the entry name: upper-cased,
    every character other than an ASCII letter or digit replaced by "_", and "_" put in
    front of a leading digit so that the result is a valid name ("3commas" -> _3COMMAS_API_KEY).
    """
    if exchange in _PROFILE_NAMES:
        return _PROFILE_NAMES[exchange]
    if exchange != "generic":
        raise InvalidInputError(
            f"unknown exchange {exchange!r}",
            hint="use one of kraken-futures, kraken-spot, generic",
        )
    stem = re.sub(r"[^A-Za-z0-9]", "_", entry_name).upper()
    if stem[:1].isdigit():
        stem = "_" + stem
    key_var, secret_var = f"{stem}_API_KEY", f"{stem}_API_SECRET"
    for var in (key_var, secret_var):
        validate_var_name(var)
    return key_var, secret_var


def var_names(
    exchange: str,
    entry_name: str,
    *,
    env_key: str | None,
    env_secret: str | None,
    preset: str | None,
) -> tuple[str, str]:
    """The (key variable, secret variable) to hand an entry over with.

    Precedence: `preset` (the `--as` flag) when given, then the entry's own overrides, then
    the profile default. Each override replaces only its own half. Both names are validated
    and must differ.
    """
    if preset is not None:
        chosen = _preset(preset)
        key_var, secret_var = chosen.key_var, chosen.secret_var
    elif env_key is not None and env_secret is not None:
        # An entry whose both names are overridden never depends on its profile's default.
        key_var, secret_var = env_key, env_secret
    else:
        default_key, default_secret = default_var_names(exchange, entry_name)
        key_var = env_key if env_key is not None else default_key
        secret_var = env_secret if env_secret is not None else default_secret
    validate_var_name(key_var)
    validate_var_name(secret_var)
    if key_var == secret_var:
        raise InvalidInputError(
            f"the key and the secret would both be put in {key_var}",
            hint="give the key and the secret different variable names",
        )
    return key_var, secret_var


def _preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown preset {name!r}", hint="known presets: " + ", ".join(sorted(PRESETS)),
        ) from None


# --- values ------------------------------------------------------------------------------


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


def _check_assignments(assignments: Sequence[tuple[str, str]]) -> None:
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


# --- rendering ---------------------------------------------------------------------------


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
    _check_assignments(assignments)
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


# --- run ---------------------------------------------------------------------------------


def child_env(base: Mapping[str, str], assignments: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The environment for `run`: `base` plus exactly `assignments`.

    Nothing else is added or removed. A variable in `base` with the same name as an
    assignment is replaced by the assignment. botvault's own variables (BOTVAULT_*, such
    as BOTVAULT_PASSPHRASE_FILE) are passed through unchanged like any other: strip them
    from `base` first if the child should not see them.
    """
    _check_assignments(assignments)
    env = dict(base)
    env.update(assignments)
    return env


class CommandNotFoundError(InvalidInputError):
    """`run` could not find the command (exit 127, as POSIX `env` and shells use)."""

    exit_code = 127


class CommandNotExecutableError(InvalidInputError):
    """`run` found the command but could not execute it (exit 126, as POSIX `env` uses)."""

    exit_code = 126


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process with `argv` run under exactly `env`; returns only by raising.

    The pid stays the same, so signals, exit codes and supervisors (systemd, docker) see the
    bot itself. A command without a slash is looked up in `env`'s PATH. A missing command
    raises CommandNotFoundError (exit code 127), one that exists but cannot be executed
    (permissions, not an executable, a script without `#!`) CommandNotExecutableError
    (126); both are InvalidInputError and name only argv[0].
    """
    if not argv:
        raise InvalidInputError("no command to run", hint="put the command after --")
    _check_exec_args(argv, env)
    _flush_std_streams()
    command = argv[0]
    try:
        # S606: running the user's own command is what `run` is for; argv is a list, no shell.
        os.execvpe(command, list(argv), dict(env))  # noqa: S606
    except (FileNotFoundError, NotADirectoryError):
        raise CommandNotFoundError(f"command not found: {command!r}") from None
    except OSError as exc:
        raise CommandNotExecutableError(
            f"cannot execute {command!r}: {exc.strerror or type(exc).__name__}",
        ) from None


def _check_exec_args(argv: Sequence[str], env: Mapping[str, str]) -> None:
    if any("\x00" in arg for arg in argv):
        raise InvalidInputError("a command argument contains a NUL byte")
    for var, value in env.items():
        if not var or "=" in var or "\x00" in var:
            raise InvalidInputError(f"invalid environment variable name {var!r}")
        # Only NUL is checked here: values inherited from os.environ may hold undecodable
        # bytes as surrogate escapes, which execve passes on unchanged.
        if "\x00" in value:
            raise InvalidInputError(
                f"the value of {var} contains a NUL byte; environment variables cannot hold NUL",
            )


def _flush_std_streams() -> None:
    # exec discards Python's buffers: without this, anything printed before `run` execs
    # (a warning, a notice) would be lost whenever stdout is a pipe or a file.
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            # A closed or broken stream must not stop the bot from starting.
            with contextlib.suppress(OSError, ValueError):
                stream.flush()

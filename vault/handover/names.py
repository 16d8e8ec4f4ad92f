"""Variable names: validation and deny-list, profile defaults, and choosing the names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from ..errors import InvalidInputError
from ..exchanges.profiles import GENERIC, PROFILES, VAR_NAMES
from .presets import PRESETS, Preset

__all__ = ["default_var_names", "validate_var_name", "var_names"]

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


def default_var_names(exchange: str, entry_name: str) -> tuple[str, str]:
    """The profile's (key variable, secret variable) for an entry.

    Kraken profiles have fixed names. `generic` derives them from the entry name: upper-cased,
    every character other than an ASCII letter or digit replaced by "_", and "_" put in
    front of a leading digit so that the result is a valid name ("3commas" -> _3COMMAS_API_KEY).
    """
    if exchange in VAR_NAMES:
        return VAR_NAMES[exchange]
    if exchange != GENERIC:
        raise InvalidInputError(
            f"unknown exchange {exchange!r}",
            hint="use one of " + ", ".join(PROFILES),
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
        _check_product(chosen, exchange, entry_name)
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


def _check_product(chosen: Preset, exchange: str, entry_name: str) -> None:
    """A Spot preset never carries a Futures key (or the reverse): the bot would read a key
    of the other product under its names and fail, or worse, trade where it was not meant."""
    if chosen.product is None or chosen.product == exchange or not exchange.startswith(
            "kraken-"):
        return  # a generic key may be handed over under any bot's names
    fitting = sorted(p.name for p in PRESETS.values() if p.product == exchange)
    raise InvalidInputError(
        f"preset {chosen.name!r} is for {chosen.product} keys; {entry_name!r} is a "
        f"{exchange} key",
        hint=("for this key use --as " + " or --as ".join(fitting)) if fitting else
        "this key has no preset of its product; use its own variable names")


def _preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown preset {name!r}", hint="known presets: " + ", ".join(sorted(PRESETS)),
        ) from None


"""botvault.handover: variable names and presets, `env` output, the child environment, exec.

The output formats are checked against the real readers: bash, dash, sh and zsh for `sh`,
python-dotenv for `dotenv`, `env -0` and a real exec for `run`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botvault.errors import InvalidInputError
from botvault.handover import (
    FORMATS,
    PRESETS,
    CommandNotExecutableError,
    CommandNotFoundError,
    child_env,
    default_var_names,
    exec_command,
    render,
    validate_var_name,
    var_names,
)

REPO = Path(__file__).resolve().parents[1]
MARKER = "S3CR3T-marker-7f1c"  # a recognisable secret, to prove it never reaches a message

# Every shell the `sh` output must survive. `sh` is dash on Debian and bash in POSIX mode on
# macOS; zsh also with RC_QUOTES, under which '' inside quotes means a quote.
SHELLS: tuple[tuple[str, ...], ...] = (
    ("bash",), ("bash", "--posix"), ("dash",), ("sh",), ("zsh",), ("zsh", "-o", "rcquotes"),
)
LOCALES = ("C", "C.UTF-8")

HOSTILE = (
    "", "'", "''", "'\\''", "\\", "\\'", '"', "\\\"", "$(id)", "`id`", "${HOME}", "$HOME",
    "$", "$$", "!!", "!$", "!-1", "x!y", "\n", "\r", "\r\n", "\n\n", "-n", "--", "-e foo",
    " lead", "trail ", "\t", "a\nexport X=1", "é漢字🔑", "\x01", "\x7f", "\x1b[31m", "\u2028",
    "\u0085", "\ufeff", "*", "?", "[a]", "~", "~root", "#c", ";", "&&", "|", ">", "<", "(",
    ")", "{", "}", "%", "^", "=", "a=b", "\\n", "\\\n", "'$(touch /tmp/x)'", "a[$(id)]",
)
VALUE_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
values = st.one_of(
    st.text(VALUE_CHARS, max_size=40),
    st.sampled_from(HOSTILE),
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(VALUE_CHARS, max_size=5)),
             max_size=8).map("".join),
)
SHELL_SETTINGS = settings(max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])


def _shell_params() -> Iterator[object]:
    for argv in SHELLS:
        absent = shutil.which(argv[0]) is None
        marks = [pytest.mark.skip(reason=f"{argv[0]} is not installed")] if absent else []
        yield pytest.param(argv, id=" ".join(argv), marks=marks)


def _run_sh(shell: Sequence[str], script: str, *args: str, locale: str = "C.UTF-8",
            ) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": locale}
    return subprocess.run([*shell, "-c", script, "botvault-test", *args], env=env,
                          capture_output=True, check=False, timeout=30)


def _eval_and_print(shell: Sequence[str], rendered: str, names: Sequence[str], tmp: Path,
                    locale: str) -> list[bytes]:
    """eval the file in `shell`, then print each variable NUL-terminated."""
    path = tmp / "env.sh"
    path.write_bytes(rendered.encode("utf-8"))
    printing = " ".join(f"printf '%s\\0' \"${name}\";" for name in names)
    result = _run_sh(shell, f'eval "$(cat "$1")"; {printing}', str(path), locale=locale)
    assert result.returncode == 0, result.stderr
    return result.stdout.split(b"\0")[:-1]


def _refusal(call: object) -> InvalidInputError:
    assert callable(call)
    with pytest.raises(InvalidInputError) as info:
        call()
    return info.value


def _assert_no_secret(exc: InvalidInputError, secret: str = MARKER) -> None:
    for text in (str(exc), exc.message, exc.hint or "", repr(exc), repr(exc.args)):
        assert secret not in text


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(("exchange", "entry", "expected"), [
    ("kraken-futures", "anything", ("KRAKEN_FUTURES_API_KEY", "KRAKEN_FUTURES_API_SECRET")),
    ("kraken-spot", "anything", ("KRAKEN_API_KEY", "KRAKEN_API_SECRET")),
    ("generic", "binance", ("BINANCE_API_KEY", "BINANCE_API_SECRET")),
    ("generic", "my-bot.v2", ("MY_BOT_V2_API_KEY", "MY_BOT_V2_API_SECRET")),
    ("generic", "3commas", ("_3COMMAS_API_KEY", "_3COMMAS_API_SECRET")),
    ("generic", "a_b-c.d", ("A_B_C_D_API_KEY", "A_B_C_D_API_SECRET")),
    ("generic", "ünï", ("_N__API_KEY", "_N__API_SECRET")),
])
def test_default_var_names(exchange: str, entry: str, expected: tuple[str, str]) -> None:
    assert default_var_names(exchange, entry) == expected


@given(st.text(max_size=30))
def test_generic_names_are_always_portable_or_refused(entry: str) -> None:
    names: tuple[str, str] | None = None
    with contextlib.suppress(InvalidInputError):
        names = default_var_names("generic", entry)
    if names is None:
        # Only the deny-list may refuse a derived name: its shape is always portable.
        exc = _refusal(lambda: default_var_names("generic", entry))
        assert "refused" in str(exc)
    else:
        assert [validate_var_name(name) for name in names] == list(names)


def test_generic_name_that_would_hijack_is_refused_with_a_hint() -> None:
    exc = _refusal(lambda: default_var_names("generic", "ld"))
    assert "LD_API_KEY" in str(exc)
    assert exc.hint


def test_unknown_exchange_is_refused() -> None:
    exc = _refusal(lambda: default_var_names("binance", "x"))
    assert "binance" in str(exc)


def test_var_names_precedence() -> None:
    def names(**kw: str | None) -> tuple[str, str]:
        args: dict[str, str | None] = {"env_key": None, "env_secret": None, "preset": None}
        args.update(kw)
        return var_names("kraken-futures", "main", env_key=args["env_key"],
                         env_secret=args["env_secret"], preset=args["preset"])

    assert names() == ("KRAKEN_FUTURES_API_KEY", "KRAKEN_FUTURES_API_SECRET")
    assert names(env_key="MY_KEY") == ("MY_KEY", "KRAKEN_FUTURES_API_SECRET")
    assert names(env_secret="MY_SECRET") == ("KRAKEN_FUTURES_API_KEY", "MY_SECRET")
    assert names(env_key="MY_KEY", env_secret="MY_SECRET") == ("MY_KEY", "MY_SECRET")
    assert names(env_key="MY_KEY", env_secret="MY_SECRET", preset="freqtrade") == (
        "FREQTRADE__EXCHANGE__KEY", "FREQTRADE__EXCHANGE__SECRET")


def test_var_names_with_both_overrides_needs_no_profile() -> None:
    assert var_names("not-an-exchange", "x", env_key="A", env_secret="B", preset=None) == (
        "A", "B")


def test_var_names_refuses_bad_overrides_presets_and_collisions() -> None:
    exc = _refusal(lambda: var_names("kraken-spot", "x", env_key="LD_PRELOAD",
                                     env_secret=None, preset=None))
    assert "LD_PRELOAD" in str(exc)
    exc = _refusal(lambda: var_names("kraken-spot", "x", env_key=None, env_secret=None,
                                     preset="no-such-bot"))
    assert exc.hint and "freqtrade" in exc.hint
    exc = _refusal(lambda: var_names("kraken-spot", "x", env_key="SAME", env_secret="SAME",
                                     preset=None))
    assert "SAME" in str(exc)


@pytest.mark.parametrize("name", [
    "PATH", "path", "Path", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "ld_preload",
    "DYLD_INSERT_LIBRARIES", "DYLD_LIBRARY_PATH", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME",
    "PYTHONWARNINGS", "PYTHONBREAKPOINT", "PYTHONUSERBASE", "BASH_ENV", "BASH_FUNC_x", "ENV",
    "IFS", "HOME", "SHELL", "CDPATH", "fpath", "ZDOTDIR", "PROMPT_COMMAND", "PS4", "SHELLOPTS",
    "GCONV_PATH", "GLIBC_TUNABLES", "NODE_OPTIONS", "PERL5OPT", "RUBYOPT", "JAVA_TOOL_OPTIONS",
    "HTTPS_PROXY", "https_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
    "BOTVAULT_PASSPHRASE_FILE", "BOTVAULT_PASSPHRASE_COMMAND", "RANDOM", "OPTIND", "LINES",
    "UID", "ZSH_VERSION", "mapfile", "_",
])
def test_hijack_names_are_refused(name: str) -> None:
    exc = _refusal(lambda: validate_var_name(name))
    assert name in str(exc)
    assert "refused" in str(exc)
    assert exc.hint


@pytest.mark.parametrize("name", [
    "", "1ABC", "A-B", "A B", "A=B", "A\nB", "ABC\n", "\nABC", "Ä", "A.B", "$A", "A;B",
    "A'B", "-A", "A\x00B",
])
def test_invalid_names_are_refused(name: str) -> None:
    exc = _refusal(lambda: validate_var_name(name))
    assert "invalid" in str(exc)


def test_non_string_name_is_refused() -> None:
    exc = _refusal(lambda: validate_var_name(42))  # type: ignore[arg-type]
    assert "invalid" in str(exc)


@pytest.mark.parametrize("name", [
    "KRAKEN_API_KEY", "FREQTRADE__EXCHANGE__KEY", "_3COMMAS_API_KEY", "PYTHON_BOT_API_KEY",
    "LDAP_KEY", "PATHFINDER_API_KEY", "a", "lower_case_ok", "X1",
])
def test_ordinary_names_are_accepted(name: str) -> None:
    assert validate_var_name(name) == name


ZSH_MODULES = ("datetime mapfile system terminfo termcap zleparameter langinfo curses stat "
               "parameter zprof zutil watch sched zftp zpty zselect files rlimits nearcolor "
               "pcre regex")
# How each shell lists the variables it defines itself, and what to run first.
SHELL_LISTINGS: dict[str, tuple[tuple[str, ...], str]] = {
    "bash": (("bash", "--norc", "--noprofile"), "compgen -v"),
    "dash": (("dash",), "set | cut -d= -f1"),
    "zsh": (("zsh", "-f"), 'print -l ${(k)parameters}'),
}


@pytest.mark.parametrize("shell_name", sorted(SHELL_LISTINGS))
def test_every_shell_variable_is_refused_or_exports_faithfully(shell_name: str) -> None:
    """The deny-list is checked against the shells themselves, not against memory."""
    if shutil.which(shell_name) is None:
        pytest.skip(f"{shell_name} is not installed")
    shell, lister = SHELL_LISTINGS[shell_name]
    prelude = ""
    if shell_name == "zsh":
        prelude = f"for m in {ZSH_MODULES}; do zmodload zsh/$m 2>/dev/null; done; "
    listed = _run_sh(shell, prelude + lister).stdout.decode().split()
    names = sorted({n for n in listed if n.isascii() and n.isidentifier()})
    assert {"IFS", "PATH"} <= set(names)  # the listing itself worked
    value = "h'o$(x)`y`\\ \n!é"
    unfaithful = []
    for name in names:
        try:
            validate_var_name(name)
        except InvalidInputError:
            continue
        script = prelude + 'eval "$1" 2>/dev/null; env -0'
        out = _run_sh(shell, script, render([(name, value)], "sh")).stdout
        exported = dict(item.split(b"=", 1) for item in out.split(b"\0") if b"=" in item)
        if exported.get(name.encode()) != value.encode():
            unfaithful.append(name)
    assert unfaithful == []


# --- presets -----------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "key_var", "secret_var"), [
    ("freqtrade", "FREQTRADE__EXCHANGE__KEY", "FREQTRADE__EXCHANGE__SECRET"),
    ("kraken-sdk-spot", "KRAKEN_SPOT_API_KEY", "KRAKEN_SPOT_SECRET_KEY"),
    ("kraken-sdk-futures", "KRAKEN_FUTURES_API_KEY", "KRAKEN_FUTURES_SECRET_KEY"),
    ("nautilus-kraken-spot", "KRAKEN_SPOT_API_KEY", "KRAKEN_SPOT_API_SECRET"),
    ("nautilus-kraken-futures", "KRAKEN_FUTURES_API_KEY", "KRAKEN_FUTURES_API_SECRET"),
    ("nautilus-kraken-futures-demo", "KRAKEN_FUTURES_DEMO_API_KEY",
     "KRAKEN_FUTURES_DEMO_API_SECRET"),
])
def test_preset_names(preset: str, key_var: str, secret_var: str) -> None:
    chosen = PRESETS[preset]
    assert (chosen.name, chosen.key_var, chosen.secret_var) == (preset, key_var, secret_var)
    assert var_names("generic", "x", env_key="A", env_secret="B", preset=preset) == (
        key_var, secret_var)


def test_every_preset_is_tested_valid_and_cites_a_source() -> None:
    assert set(PRESETS) == {
        "freqtrade", "kraken-sdk-spot", "kraken-sdk-futures", "nautilus-kraken-spot",
        "nautilus-kraken-futures", "nautilus-kraken-futures-demo"}
    for name, preset in PRESETS.items():
        assert preset.name == name
        validate_var_name(preset.key_var)
        validate_var_name(preset.secret_var)
        assert preset.key_var != preset.secret_var
        assert preset.description
        assert len(preset.source) > 20


def test_freqtrade_preset_lands_on_exchange_key_and_secret() -> None:
    """freqtrade strips FREQTRADE__, splits on '__' and lower-cases each level
    (freqtrade/configuration/environment_vars.py)."""
    def config_path(var: str) -> list[str]:
        assert var.startswith("FREQTRADE__")
        return [level.lower() for level in var.removeprefix("FREQTRADE__").split("__")]

    assert config_path(PRESETS["freqtrade"].key_var) == ["exchange", "key"]
    assert config_path(PRESETS["freqtrade"].secret_var) == ["exchange", "secret"]


def test_kraken_sdk_presets_follow_clicks_auto_envvar_rule() -> None:
    """click names an option's variable PREFIX_COMMAND_OPTION; python-kraken-sdk's CLI uses
    auto_envvar_prefix="KRAKEN" with --api-key/--secret-key on `spot` and `futures`."""
    for command in ("spot", "futures"):
        preset = PRESETS[f"kraken-sdk-{command}"]
        assert preset.key_var == f"KRAKEN_{command}_api_key".upper()
        assert preset.secret_var == f"KRAKEN_{command}_secret_key".upper()


# --- sh ----------------------------------------------------------------------------------


def test_sh_output_shape() -> None:
    assert render([("A", "x'y"), ("B", "")], "sh") == "export A='x'\\''y'\nexport B=''\n"
    assert render([], "sh") == ""


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("shell", list(_shell_params()))
@SHELL_SETTINGS
@given(secrets=st.lists(values, min_size=1, max_size=4))
def test_sh_round_trips_through_real_shells(shell: tuple[str, ...], locale: str,
                                            secrets: list[str], tmp_path: Path) -> None:
    names = [f"BV_TEST_{i}" for i in range(len(secrets))]
    rendered = render(list(zip(names, secrets, strict=True)), "sh")
    got = _eval_and_print(shell, rendered, names, tmp_path, locale)
    assert got == [secret.encode("utf-8") for secret in secrets]


@pytest.mark.parametrize("shell", list(_shell_params()))
def test_sh_round_trips_every_hostile_value_at_once(shell: tuple[str, ...],
                                                    tmp_path: Path) -> None:
    names = [f"BV_TEST_{i}" for i in range(len(HOSTILE))]
    rendered = render(list(zip(names, HOSTILE, strict=True)), "sh")
    got = _eval_and_print(shell, rendered, names, tmp_path, "C.UTF-8")
    assert got == [value.encode("utf-8") for value in HOSTILE]


def test_sh_eval_runs_nothing_from_the_value(tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    hostile = f"$(touch {canary})`touch {canary}`'; touch {canary}; '"
    rendered = render([("BV_TEST", hostile)], "sh")
    for shell in ("bash", "dash", "zsh"):
        if shutil.which(shell):
            _eval_and_print((shell,), rendered, ["BV_TEST"], tmp_path, "C.UTF-8")
    assert not canary.exists()


@settings(max_examples=40, deadline=None)
@given(secret=st.text(st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"]),
                      max_size=30).map(lambda s: "!" + s + "!!"))
def test_sh_output_pasted_into_interactive_bash_keeps_history_characters(secret: str) -> None:
    """Pasting (not eval) into an interactive bash with history expansion on: `!` stays."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    lines = "set -H\n" + render([("BV_TEST", secret)], "sh") + "printf '%s\\0' \"$BV_TEST\"\n"
    result = subprocess.run([bash, "--norc", "--noprofile", "-i"], input=lines.encode(),
                            capture_output=True, check=False, timeout=30,
                            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8",
                                 "HISTFILE": "/dev/null"})
    assert result.stdout.split(b"\0")[0] == secret.encode()


# --- dotenv ------------------------------------------------------------------------------

needs_dotenv = pytest.mark.skipif(
    importlib.util.find_spec("dotenv") is None,
    reason="python-dotenv is not installed (it is a test dependency: pip install python-dotenv)",
)


def _dotenv_representable(value: str) -> bool:
    return "$" not in value and not value.endswith(("\\", '"'))


def _read_dotenv(text: str, tmp: Path) -> dict[str, str | None]:
    from dotenv import dotenv_values

    path = tmp / "botvault.env"
    path.write_bytes(text.encode("utf-8"))
    return dotenv_values(path)


def test_dotenv_output_shape() -> None:
    text = render([("A", 'say "hi"\\o/\nline2\r'), ("B", "")], "dotenv")
    assert text == 'A="say \\"hi\\"\\\\o/\\nline2\\r"\nB=""\n'


@needs_dotenv
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secrets=st.lists(values.filter(_dotenv_representable), min_size=1, max_size=4))
def test_dotenv_round_trips_through_python_dotenv(secrets: list[str], tmp_path: Path) -> None:
    assignments = [(f"BV_TEST_{i}", secret) for i, secret in enumerate(secrets)]
    assert _read_dotenv(render(assignments, "dotenv"), tmp_path) == dict(assignments)


@needs_dotenv
@pytest.mark.parametrize("value", [
    "plain", "with space", " lead and trail ", "tab\there", "a\"b", "\"start", "a\\b",
    "\\start", "a\\\"b", "\\\\x", "\\n literally", "line\nbreak", "cr\rhere", "crlf\r\n.",
    "#hash", "a #comment", "'single'", "`tick`", "é漢字🔑", "\x0b\x0c\x1c\x1d\x1e\x85\u2028",
    "export X=1", "\ufeffbom", "=",
])
def test_dotenv_examples_round_trip(value: str, tmp_path: Path) -> None:
    assert _read_dotenv(render([("BV_TEST", value)], "dotenv"), tmp_path) == {
        "BV_TEST": value}


@pytest.mark.parametrize("value", [
    f"{MARKER}$", f"${{{MARKER}}}", f"$HOME{MARKER}", f"{MARKER}$$", f"{MARKER}\\",
    f'{MARKER}"', f"{MARKER}\\$",
])
def test_dotenv_refuses_what_readers_disagree_on(value: str) -> None:
    exc = _refusal(lambda: render([("BV_TEST", value)], "dotenv"))
    assert "BV_TEST" in str(exc)
    _assert_no_secret(exc)


@needs_dotenv
@pytest.mark.parametrize(("value", "python_dotenv_reads"), [
    ("${BV_OTHER}", "other"), ("x${BV_OTHER}y", "xothery"), ("${BV_UNSET:-b}", "b"),
    ("\\${BV_OTHER}", "\\other"),
])
def test_dollar_really_is_expanded_by_python_dotenv(value: str, python_dotenv_reads: str,
                                                    tmp_path: Path) -> None:
    """Why `$` is refused: written the obvious way, python-dotenv expands it (and a
    backslash does not escape it), while docker compose would want `$$`."""
    from dotenv import dotenv_values

    escaped = value.replace("\\", "\\\\")
    path = tmp_path / "naive.env"
    path.write_text(f'BV_OTHER="other"\nBV_TEST="{escaped}"\n', encoding="utf-8")
    assert dotenv_values(path)["BV_TEST"] == python_dotenv_reads


def test_dotenv_refuses_names_old_compose_would_cut() -> None:
    exc = _refusal(lambda: render([("exported_KEY", "x")], "dotenv"))
    assert "export" in str(exc)
    assert render([("EXPORTED_KEY", "x")], "dotenv") == 'EXPORTED_KEY="x"\n'


# --- json and common checks --------------------------------------------------------------


@given(secrets=st.lists(values, min_size=0, max_size=5))
def test_json_round_trips_in_order(secrets: list[str]) -> None:
    assignments = [(f"BV_{i}", secret) for i, secret in reversed(list(enumerate(secrets)))]
    text = render(assignments, "json")
    assert text.endswith("\n")
    loaded = json.loads(text)
    assert list(loaded.items()) == assignments


def test_json_keeps_unicode_readable() -> None:
    assert render([("A", "é")], "json") == '{"A": "é"}\n'


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_refuses_nul_without_echoing(fmt: str) -> None:
    exc = _refusal(lambda: render([("BV_TEST", f"{MARKER}\x00{MARKER}")], fmt))  # type: ignore[arg-type]
    assert "NUL" in str(exc)
    assert "BV_TEST" in str(exc)
    _assert_no_secret(exc)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_refuses_lone_surrogates_without_echoing(fmt: str) -> None:
    exc = _refusal(lambda: render([("BV_TEST", f"{MARKER}\udc80")], fmt))  # type: ignore[arg-type]
    _assert_no_secret(exc)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_validates_names_and_duplicates(fmt: str) -> None:
    _refusal(lambda: render([("LD_PRELOAD", "x")], fmt))  # type: ignore[arg-type]
    _refusal(lambda: render([("A B", "x")], fmt))  # type: ignore[arg-type]
    exc = _refusal(lambda: render([("A", "x"), ("A", "y")], fmt))  # type: ignore[arg-type]
    assert "twice" in str(exc)


def test_unknown_format_is_refused() -> None:
    exc = _refusal(lambda: render([("A", "x")], "yaml"))  # type: ignore[arg-type]
    assert exc.hint and "dotenv" in exc.hint


def test_non_str_value_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        render([("A", b"bytes")], "sh")  # type: ignore[list-item]


# --- child environment -------------------------------------------------------------------


def _env_dump(env: dict[str, str]) -> dict[str, str]:
    """What a real child process sees, as printed by `env -0`."""
    env_bin = shutil.which("env")
    assert env_bin is not None
    out = subprocess.run([env_bin, "-0"], env=env, capture_output=True, check=True).stdout
    items = (item.split(b"=", 1) for item in out.split(b"\0") if item)
    return {os.fsdecode(k): os.fsdecode(v) for k, v in items}


def test_child_env_is_base_plus_exactly_the_assignments() -> None:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KEEP_ME": "1",
            "BOTVAULT_PASSPHRASE_FILE": "/run/pass", "KRAKEN_API_KEY": "stale",
            "EMPTY": ""}
    before = dict(base)
    assignments = [("KRAKEN_API_KEY", "new-key"), ("KRAKEN_API_SECRET", "s\n=x'$")]
    env = child_env(base, assignments)
    assert base == before
    expected = {**base, "KRAKEN_API_KEY": "new-key", "KRAKEN_API_SECRET": "s\n=x'$"}
    assert env == expected
    assert _env_dump(env) == expected


@settings(max_examples=50, deadline=None)
@given(secrets=st.lists(values, min_size=1, max_size=4),
       base=st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True),
                            st.text(VALUE_CHARS, max_size=10), max_size=5))
def test_child_env_reaches_a_real_child_byte_for_byte(secrets: list[str],
                                                      base: dict[str, str]) -> None:
    assignments = [(f"BV_TEST_{i}", secret) for i, secret in enumerate(secrets)]
    # Keep the random base away from the names and from loader variables (LD_AUDIT...).
    base = {k: v for k, v in base.items() if not k.startswith(("BV_TEST_", "LD_"))}
    assert _env_dump(child_env(base, assignments)) == {**base, **dict(assignments)}


def test_child_env_refuses_nul_hijacks_and_duplicates() -> None:
    exc = _refusal(lambda: child_env({}, [("BV_TEST", f"{MARKER}\x00")]))
    _assert_no_secret(exc)
    _refusal(lambda: child_env({}, [("PYTHONPATH", "x")]))
    _refusal(lambda: child_env({}, [("A", "x"), ("A", "y")]))


def test_child_env_leaves_odd_base_values_alone() -> None:
    """Undecodable bytes in the user's environment arrive as surrogate escapes."""
    base = {"ODD": "\udcff\udcfe"}
    assert child_env(base, [("A", "x")]) == {"ODD": "\udcff\udcfe", "A": "x"}


# --- exec --------------------------------------------------------------------------------


def _python_child(code: str) -> subprocess.CompletedProcess[str]:
    # Without PYTHONUNBUFFERED (which a CI may set) the child's stdout to a pipe is
    # block-buffered, as it is for a real `botvault run` under a supervisor.
    child_environment = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                          env=child_environment, capture_output=True, text=True, check=False,
                          timeout=60)


def test_exec_replaces_the_process_and_keeps_the_exit_code() -> None:
    result = _python_child("""
        import os, sys
        from botvault.handover import exec_command
        print(os.getpid())  # stdout is a pipe: block-buffered, lost unless flushed
        exec_command([sys.executable, "-c",
                      "import os, sys; print(os.getpid()); sys.exit(7)"], dict(os.environ))
    """)
    assert result.returncode == 7, result.stderr
    before, after = result.stdout.split()
    assert before == after


def test_exec_gives_the_child_exactly_the_environment(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KEEP_ME": "1",
           "KRAKEN_API_SECRET": "x\ny'$`"}
    (tmp_path / "env.json").write_text(json.dumps(env), encoding="utf-8")
    result = _python_child(f"""
        import json
        from botvault.handover import exec_command
        env = json.load(open({str(tmp_path / "env.json")!r}))
        exec_command(["env", "-0"], env)
    """)
    assert result.returncode == 0, result.stderr
    items = (item.split("=", 1) for item in result.stdout.split("\0") if item)
    assert dict(items) == env


def test_exec_looks_the_command_up_in_the_new_path(tmp_path: Path) -> None:
    bot = tmp_path / "my-bot"
    bot.write_text("#!/bin/sh\necho found \"$KRAKEN_API_KEY\"\n", encoding="utf-8")
    bot.chmod(0o700)
    result = _python_child(f"""
        from botvault.handover import exec_command
        exec_command(["my-bot"], {{"PATH": {str(tmp_path)!r}, "KRAKEN_API_KEY": "k"}})
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "found k\n"


def test_missing_command_is_command_not_found(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFoundError) as info:
        exec_command(["botvault-no-such-command"], {"PATH": str(tmp_path)})
    assert isinstance(info.value, InvalidInputError)
    assert info.value.exit_code == 127
    assert "botvault-no-such-command" in str(info.value)
    with pytest.raises(CommandNotFoundError):
        exec_command([str(tmp_path / "missing")], {})


def test_unexecutable_command_is_not_executable(tmp_path: Path) -> None:
    no_x_bit = tmp_path / "plain"
    no_x_bit.write_text("#!/bin/sh\n", encoding="utf-8")
    no_x_bit.chmod(0o600)
    not_a_program = tmp_path / "garbage"
    not_a_program.write_bytes(b"\x7fELF not really")
    not_a_program.chmod(0o700)
    for command in (no_x_bit, not_a_program, tmp_path):
        with pytest.raises(CommandNotExecutableError) as info:
            exec_command([str(command)], {"KRAKEN_API_SECRET": MARKER})
        assert info.value.exit_code == 126
        assert isinstance(info.value, InvalidInputError)
        _assert_no_secret(info.value)


def test_exec_refuses_empty_argv_and_nul() -> None:
    _refusal(lambda: exec_command([], {}))
    _refusal(lambda: exec_command(["true\x00"], {}))
    exc = _refusal(lambda: exec_command(["true"], {"BV_TEST": f"{MARKER}\x00"}))
    _assert_no_secret(exc)
    _refusal(lambda: exec_command(["true"], {"A=B": "x"}))

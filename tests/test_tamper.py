"""A modified vault file never opens, and fails only with one of two errors.

`FormatError` (exit 8) is what can be told without the passphrase: wrong magic, version or
KDF id, KDF parameters out of range, a structure that cannot be (bad record count or
length, truncation, trailing bytes). It must come before the KDF runs. Anything else is
`AuthenticationError` (exit 3) after the KDF. No other exception, and never any content.

Byte ranges come from the layout table at the top of vault/fileformat.py, read by
tests/helpers/vaultfiles.py independently of the library's parser.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import botvault.crypto
from botvault.cli.main import app
from botvault.crypto import KdfParams
from botvault.errors import AuthenticationError, FormatError
from botvault.open_vault import Vault
from tests.conftest import PASSPHRASE
from tests.helpers.vaultfiles import (
    COUNT_AT,
    HEADER_SIZE,
    PARAMS_AT,
    RECORD_HEAD_SIZE,
    add_generic,
    full_snapshot,
    join_vault,
    split_vault,
    with_count,
    with_params,
    write_private,
)

# From docs/format.md "Cryptography", restated here rather than imported from the code under test.
FLOOR = (19 * 1024, 2, 1)
CEILING = (4 * 1024 * 1024, 64, 16)
VECTORS = Path(__file__).parent / "data" / "vault_vectors"

Outcome = type[AuthenticationError] | type[FormatError]


def _in_range(memory: int, passes: int, lanes: int) -> bool:
    return (FLOOR[0] <= memory <= CEILING[0] and FLOOR[1] <= passes <= CEILING[1]
            and FLOOR[2] <= lanes <= CEILING[2])


class KdfSpy:
    """Counts calls of the KDF; `forbid()` makes any call fail the test."""

    def __init__(self) -> None:
        self.calls = 0
        self.forbidden = False
        self.real = botvault.crypto.derive_kek

    def derive_kek(self, passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
        if self.forbidden:
            pytest.fail(f"the KDF ran for a file that should be refused first ({params})")
        self.calls += 1
        return self.real(passphrase, salt, params)


@pytest.fixture
def kdf_spy(monkeypatch: pytest.MonkeyPatch) -> KdfSpy:
    spy = KdfSpy()
    monkeypatch.setattr(botvault.crypto, "derive_kek", spy.derive_kek)
    return spy


@pytest.fixture
def two_entry_vault(vault: Vault, vault_path: Path) -> bytes:
    """The bytes of a small valid vault: two entries."""
    add_generic(vault, "alpha", note="first")
    add_generic(vault, "beta", note="second")
    return vault_path.read_bytes()


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """Where tampered copies are written (a private dir of its own)."""
    return tmp_path / "tampered" / "vault.bv"


def open_outcome(path: Path, data: bytes, passphrase: str = PASSPHRASE) -> Outcome:
    """Write `data` and open it; only the two errors are acceptable outcomes."""
    write_private(path, data)
    with pytest.raises((AuthenticationError, FormatError)) as caught:
        Vault.open(path, passphrase).close()
    if isinstance(caught.value, AuthenticationError):
        assert caught.value.exit_code == 3
        return AuthenticationError
    assert caught.value.exit_code == 8
    return FormatError


def expected_for_flip(data: bytes, pos: int, flipped: int) -> Outcome:
    """Which error a changed byte at `pos` must give, from the documented layout."""
    if pos < PARAMS_AT:  # magic, version, KDF id
        return FormatError
    if pos < PARAMS_AT + 12:  # memory, passes, lanes: refused unless still in range
        mutated = bytearray(data[:HEADER_SIZE])
        mutated[pos] = flipped
        params = struct.unpack_from(">III", mutated, PARAMS_AT)
        return AuthenticationError if _in_range(*params) else FormatError
    if pos < COUNT_AT:  # salt, vault id, generation, wrap nonce, wrapped key
        return AuthenticationError
    if pos < HEADER_SIZE:  # record count: any other count misparses the records
        return FormatError
    offset = HEADER_SIZE
    for record in split_vault(data).records:
        if offset + 16 <= pos < offset + 20:  # a record's length: misaligns what follows
            return FormatError
        offset += len(record)
    return AuthenticationError  # entry id, record nonce, ciphertext, MAC


# --- every single byte ----------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0x01, 0xFF])
def test_every_single_byte_flip_is_refused_with_the_right_error(
        two_entry_vault: bytes, target: Path, kdf_spy: KdfSpy, mask: int) -> None:
    data = two_entry_vault
    wrong = []
    for pos in range(len(data)):
        mutated = bytearray(data)
        mutated[pos] ^= mask
        calls_before = kdf_spy.calls
        got = open_outcome(target, bytes(mutated))
        expected = expected_for_flip(data, pos, mutated[pos])
        kdf_ran = kdf_spy.calls > calls_before
        if got is not expected or kdf_ran != (expected is AuthenticationError):
            wrong.append((pos, got.__name__, expected.__name__, kdf_ran))
    assert wrong == [], f"(position, got, expected, KDF ran) for {len(wrong)} positions"


@pytest.mark.parametrize("mask", [0x01, 0xFF])
def test_kdf_parameter_flips_on_a_floor_vault_refuse_or_run_the_kdf(
        vault_path: Path, target: Path, kdf_spy: KdfSpy, mask: int) -> None:
    """With real floor parameters some flips stay in range: then the KDF runs and fails."""
    with Vault.create(vault_path, PASSPHRASE, kdf=KdfParams(*FLOOR)) as v:
        add_generic(v, "alpha")
    data = vault_path.read_bytes()
    outcomes = []
    for pos in range(PARAMS_AT, PARAMS_AT + 12):
        mutated = bytearray(data)
        mutated[pos] ^= mask
        params = struct.unpack_from(">III", mutated, PARAMS_AT)
        if _in_range(*params) and params[0] > 256 * 1024:
            continue  # in range but too costly to run here
        calls_before = kdf_spy.calls
        got = open_outcome(target, bytes(mutated))
        kdf_ran = kdf_spy.calls > calls_before
        expected = AuthenticationError if _in_range(*params) else FormatError
        assert (got, kdf_ran) == (expected, expected is AuthenticationError), (pos, params)
        outcomes.append(got)
    assert set(outcomes) == {AuthenticationError, FormatError}  # both kinds were exercised


def test_every_truncation_is_a_format_error_before_the_kdf(
        two_entry_vault: bytes, target: Path, kdf_spy: KdfSpy) -> None:
    kdf_spy.forbidden = True
    for length in range(len(two_entry_vault)):
        assert open_outcome(target, two_entry_vault[:length]) is FormatError, length


@pytest.mark.parametrize("extra", [1, 31, 32, 33, 1000])
@pytest.mark.parametrize("fill", ["zeros", "random", "repeat-mac"])
def test_appended_bytes_are_a_format_error_before_the_kdf(
        two_entry_vault: bytes, target: Path, kdf_spy: KdfSpy, extra: int, fill: str) -> None:
    kdf_spy.forbidden = True
    tail = {"zeros": bytes(extra), "random": os.urandom(extra),
            "repeat-mac": (two_entry_vault[-32:] * 32)[:extra]}[fill]
    assert open_outcome(target, two_entry_vault + tail) is FormatError


# --- hostile headers ------------------------------------------------------------------------

_M, _P, _L = FLOOR
HOSTILE = [
    pytest.param((2**32 - 1, _P, _L), None, id="memory-2^32-1-KiB"),
    pytest.param((_M, 2**32 - 1, _L), None, id="passes-2^32-1"),
    pytest.param((_M, _P, 2**24), None, id="lanes-2^24"),
    pytest.param((_M, _P, 0), None, id="lanes-0"),
    pytest.param((0, _P, _L), None, id="memory-0"),
    pytest.param((_M - 1, _P, _L), None, id="memory-just-below-19MiB"),
    pytest.param((_M, 1, _L), None, id="passes-1"),
    pytest.param((_M, 0, _L), None, id="passes-0"),
    pytest.param((CEILING[0] + 1, _P, _L), None, id="memory-just-above-4GiB"),
    pytest.param((_M, 65, _L), None, id="passes-65"),
    pytest.param((_M, _P, 17), None, id="lanes-17"),
    pytest.param((2**32 - 1, 2**32 - 1, 2**32 - 1), None, id="everything-max"),
    pytest.param(None, 2**32 - 1, id="record-count-2^32-1"),
    pytest.param(None, 1_000_000, id="record-count-1e6-in-short-file"),
    pytest.param(None, 1_000_001, id="record-count-above-max"),
]


@pytest.mark.parametrize(("params", "count"), HOSTILE)
def test_hostile_header_is_refused_fast_without_the_kdf(
        two_entry_vault: bytes, target: Path, monkeypatch: pytest.MonkeyPatch,
        params: tuple[int, int, int] | None, count: int | None) -> None:
    import argon2.low_level

    def kdf_must_not_run(*args: object, **kwargs: object) -> bytes:
        pytest.fail("the KDF ran for a hostile header")

    monkeypatch.setattr(botvault.crypto, "derive_kek", kdf_must_not_run)
    monkeypatch.setattr(argon2.low_level, "hash_secret_raw", kdf_must_not_run)
    data = two_entry_vault
    if params is not None:
        data = with_params(data, *params)
    if count is not None:
        data = with_count(data, count)
    write_private(target, data)
    # The trap above proves the point (the KDF never runs), without a wall-clock bound.
    with pytest.raises(FormatError) as caught:
        Vault.open(target, PASSPHRASE)
    assert caught.value.exit_code == 8


def test_in_range_params_do_run_the_kdf(two_entry_vault: bytes, target: Path,
                                        kdf_spy: KdfSpy) -> None:
    """Control for the test above: floor parameters are accepted and reach the KDF."""
    assert open_outcome(target, with_params(two_entry_vault, *FLOOR)) is AuthenticationError
    assert kdf_spy.calls == 1


# --- moving whole records around ------------------------------------------------------------


def test_swapped_records_are_refused(two_entry_vault: bytes, target: Path) -> None:
    parts = split_vault(two_entry_vault)
    swapped = join_vault(parts.header, parts.records[::-1], parts.mac)
    assert swapped != two_entry_vault
    assert open_outcome(target, swapped) is AuthenticationError


def test_record_replayed_from_another_vault_is_refused(
        two_entry_vault: bytes, target: Path, tmp_path: Path) -> None:
    other_path = tmp_path / "other" / "vault.bv"
    with Vault.create(other_path, PASSPHRASE, kdf=botvault.crypto.CHEAPEST_TEST_ONLY) as other:
        add_generic(other, "alpha", note="first")  # same name, same content
        add_generic(other, "beta", note="second")
    theirs = split_vault(other_path.read_bytes())
    ours = split_vault(two_entry_vault)
    for i in range(2):
        records = list(ours.records)
        records[i] = theirs.records[i]
        spliced = join_vault(ours.header, records, ours.mac)
        assert open_outcome(target, spliced) is AuthenticationError
    # Their whole body under our header, and our body under their header.
    assert open_outcome(target, join_vault(ours.header, theirs.records, ours.mac)) \
        is AuthenticationError
    assert open_outcome(target, join_vault(theirs.header, ours.records, ours.mac)) \
        is AuthenticationError


def test_record_replayed_from_an_older_generation_is_refused(
        vault: Vault, vault_path: Path, target: Path) -> None:
    add_generic(vault, "alpha", note="old note")
    add_generic(vault, "beta")
    old = split_vault(vault_path.read_bytes())
    vault.edit("alpha", note="new note")
    new = split_vault(vault_path.read_bytes())
    assert old.records[1] == new.records[1]  # beta's record was kept as it was
    assert old.records[0] != new.records[0]
    replayed = join_vault(new.header, [old.records[0], new.records[1]], new.mac)
    assert open_outcome(target, replayed) is AuthenticationError
    # The old generation's header on the new body, and the old body under the new header.
    assert open_outcome(target, join_vault(old.header, new.records, new.mac)) \
        is AuthenticationError
    assert open_outcome(target, join_vault(new.header, old.records, new.mac)) \
        is AuthenticationError


@pytest.mark.parametrize("drop", [0, 1])
def test_dropped_record_with_fixed_count_is_refused(
        two_entry_vault: bytes, target: Path, drop: int) -> None:
    parts = split_vault(two_entry_vault)
    kept = [r for i, r in enumerate(parts.records) if i != drop]
    assert open_outcome(target, join_vault(parts.header, kept, parts.mac)) \
        is AuthenticationError
    assert open_outcome(target, join_vault(parts.header, [], parts.mac)) is AuthenticationError


def test_duplicated_record_with_fixed_count_is_refused(two_entry_vault: bytes,
                                                       target: Path) -> None:
    parts = split_vault(two_entry_vault)
    doubled = join_vault(parts.header, [parts.records[0], *parts.records], parts.mac)
    assert open_outcome(target, doubled) is AuthenticationError


# --- random mutations -----------------------------------------------------------------------


def _fast_kdf(real: Callable[[bytes, bytes, KdfParams], bytes]
              ) -> Callable[[bytes, bytes, KdfParams], bytes]:
    """Real KDF for the file's own (cheap) parameters. A mutation that lands on other
    in-range parameters (up to 4 GiB) gets a stand-in key: Argon2 with other parameters
    yields another key anyway, and the range check still runs first."""
    def derive(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
        if params == botvault.crypto.CHEAPEST_TEST_ONLY:
            return real(passphrase, salt, params)
        botvault.crypto.check_params(params, error=FormatError)
        return hashlib.blake2b(passphrase + salt + repr(params).encode(),
                               digest_size=32).digest()
    return derive


def test_random_mutations_only_ever_give_the_two_errors(
        two_entry_vault: bytes, vault_path: Path, target: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botvault.crypto, "derive_kek", _fast_kdf(botvault.crypto.derive_kek))
    data = two_entry_vault
    with Vault.open(vault_path, PASSPHRASE) as original:
        expected = full_snapshot(original)
    mutation = st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255))
    edits = st.one_of(
        st.lists(mutation, min_size=1, max_size=12).map(lambda ms: ("xor", ms)),
        st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=64)).map(
            lambda t: ("insert", [t])),
        st.tuples(st.integers(0, len(data) - 1), st.integers(1, 64)).map(
            lambda t: ("delete", [t])),
    )

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(edits)
    def check(edit: tuple[str, list[Any]]) -> None:
        kind, ops = edit
        mutated = bytearray(data)
        if kind == "xor":
            for pos, mask in ops:
                mutated[pos] ^= mask
        elif kind == "insert":
            pos, blob = ops[0]
            mutated[pos:pos] = blob
        else:
            pos, size = ops[0]
            del mutated[pos:pos + size]
        write_private(target, bytes(mutated))
        try:
            with Vault.open(target, PASSPHRASE) as opened:
                got = full_snapshot(opened)
        except (AuthenticationError, FormatError):
            return
        # Opening is only acceptable when the edits cancelled out, and then the content
        # must be exactly the original's.
        assert bytes(mutated) == data, "a modified file opened"
        assert got == expected

    check()


# --- the command line -----------------------------------------------------------------------


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("botvault: error:")]


def test_cli_tampered_file_exits_3_with_one_clean_error(two_entry_vault: bytes,
                                                        vault_path: Path) -> None:
    mutated = bytearray(two_entry_vault)
    mutated[HEADER_SIZE + RECORD_HEAD_SIZE + 5] ^= 0x01  # inside the first ciphertext
    write_private(vault_path, bytes(mutated))
    result = CliRunner().invoke(app, ["list", "--passphrase-stdin"], input=PASSPHRASE + "\n")
    assert result.exit_code == 3
    assert len(_error_lines(result.stderr)) == 1
    assert result.stderr.splitlines() == [
        "botvault: error: wrong passphrase or the vault was modified"]
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_cli_random_bytes_exit_8(vault_path: Path) -> None:
    write_private(vault_path, b"\x00" + os.urandom(2047))
    result = CliRunner().invoke(app, ["list", "--passphrase-stdin"], input=PASSPHRASE + "\n")
    assert result.exit_code == 8
    assert len(_error_lines(result.stderr)) == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""


def _listing(directory: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(directory)): (p.lstat().st_size, p.lstat().st_mtime_ns,
                                            p.lstat().st_mode)
            for p in sorted(directory.rglob("*"))}


def test_cli_wrong_passphrase_changes_nothing(two_entry_vault: bytes, vault_path: Path) -> None:
    before_bytes = vault_path.read_bytes()
    before_listing = _listing(vault_path.parent)
    result = CliRunner().invoke(app, ["list", "--passphrase-stdin"], input="not the passphrase\n")
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        "botvault: error: wrong passphrase or the vault was modified"]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert vault_path.read_bytes() == before_bytes
    assert _listing(vault_path.parent) == before_listing


# --- the committed vectors ------------------------------------------------------------------


def _vectors() -> list[dict[str, Any]]:
    manifest: dict[str, Any] = json.loads((VECTORS / "manifest.json").read_text("utf-8"))
    vectors: list[dict[str, Any]] = manifest["vectors"]
    return vectors


def test_vector_manifest_covers_every_file_and_every_outcome() -> None:
    files = {v["file"] for v in _vectors()}
    assert files == {p.name for p in VECTORS.glob("*.bv")}
    assert {v["expect"] for v in _vectors()} == {"ok", "AuthenticationError", "FormatError"}


@pytest.fixture
def private_copy(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    def copy(name: str) -> Path:
        dest = tmp_path / "vectors" / name
        write_private(dest, (VECTORS / name).read_bytes())
        return dest
    yield copy
    shutil.rmtree(tmp_path / "vectors", ignore_errors=True)


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: str(v["file"]))
def test_vector(vector: dict[str, Any], private_copy: Callable[[str], Path],
                kdf_spy: KdfSpy) -> None:
    path = private_copy(vector["file"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == vector["sha256"]
    expect = vector["expect"]
    if expect == "ok":
        with Vault.open(path, vector["passphrase"]) as opened:
            assert [e.name for e in opened.list()] == vector["entries"]
        return
    error = {"AuthenticationError": AuthenticationError, "FormatError": FormatError}[expect]
    kdf_spy.forbidden = error is FormatError  # format errors come before the KDF
    with pytest.raises(error):
        Vault.open(path, vector["passphrase"])

"""Crashes and I/O failures during a save never cost the vault.

Part 1 SIGKILLs writer processes at random moments inside saves, at least 200 times, and
checks after each kill that the vault opens and holds either the state before the
interrupted save or the one after it. Part 2 injects write, fsync and rename failures and
checks that the file is byte-identical afterwards and that the next save works.
"""

from __future__ import annotations

import errno
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import signal
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

import botvault.crypto
import botvault.vault_file
from botvault import fileformat
from botvault.cli.main import app
from botvault.open_vault import Vault
from botvault.vault_file import backup_dir, list_backups
from tests.conftest import PASSPHRASE
from tests.helpers.vaultfiles import add_generic, mode_of, snapshot, temp_files
from tests.helpers.writers import Message, crash_writer

KILLS_INSIDE_SAVES = 200
MAX_ROUNDS = 1500
KEEP_BACKUPS = 5

# --- part 1: SIGKILL harness ----------------------------------------------------------------


def _measure_save_seconds(v: Vault) -> float:
    durations = []
    for i in range(15):
        start = time.perf_counter()
        v.edit("n0", note=f"timing {i}")
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def _check_at_rest(path: Path, *, max_backups: int = KEEP_BACKUPS
                   ) -> tuple[int, dict[str, str]]:
    """Everything that must hold whenever no save is running. Returns (generation, state)."""
    assert mode_of(path) == 0o600
    assert mode_of(backup_dir(path)) == 0o700
    for temp in temp_files(path):  # a killed writer's leftover: private, never followed
        assert mode_of(temp) == 0o600, temp
    with Vault.open(path, PASSPHRASE) as v:
        generation, state = v.generation, snapshot(v)
        backups = v.backups()  # each one verified and decrypted
    assert 1 <= len(backups) <= max_backups
    for backup in backups:
        assert mode_of(backup.path) == 0o600
        assert backup.generation <= generation
        header, _ = fileformat.parse_header(backup.path.read_bytes())
        assert header.generation == backup.generation
    return generation, state


def _read_until(reader: multiprocessing.connection.Connection, intents: int,
                messages: list[Message]) -> None:
    seen = 0
    while seen < intents:
        if not reader.poll(10):
            pytest.fail(f"the writer went silent; messages so far: {messages}")
        try:
            message = reader.recv()
        except EOFError:
            pytest.fail(f"the writer died before it was killed: {messages}")
        messages.append(message)
        if message[0] == "error":
            pytest.fail(f"the writer failed on its own:\n{message[1]}")
        if message[0] == "intent":
            seen += 1


def _drain(reader: multiprocessing.connection.Connection, messages: list[Message]) -> None:
    while True:
        try:
            messages.append(reader.recv())
        except EOFError:
            return


@pytest.mark.slow
def test_sigkill_during_saves_leaves_the_state_before_or_after(
        vault: Vault, vault_path: Path) -> None:
    for name in ("n0", "n1", "n2"):
        add_generic(vault, name, note="start")
    save_seconds = _measure_save_seconds(vault)
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    ctx = multiprocessing.get_context("fork")
    known = _check_at_rest(vault_path)
    interrupted = rounds = landed = 0
    unpruned = 0  # kills since the last completed save: each may leave one extra backup
    while interrupted < KILLS_INSIDE_SAVES:
        rounds += 1
        assert rounds <= MAX_ROUNDS, f"only {interrupted} kills landed inside a save"
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=crash_writer, daemon=True,
                           args=(str(vault_path), PASSPHRASE, seed + rounds, writer))
        proc.start()
        writer.close()
        messages: list[Message] = []
        try:
            _read_until(reader, rng.randint(1, 3), messages)
            time.sleep(rng.uniform(0, save_seconds))
        finally:
            if proc.pid is not None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.join()
        _drain(reader, messages)
        reader.close()
        where = f"seed {seed}, round {rounds}, messages {messages}"
        assert proc.exitcode == -signal.SIGKILL, where
        assert messages[0][0] == "open", where
        assert messages[0][1:] == known, where  # each writer found what was checked last
        last = messages[-1]
        candidates = [last[1:]]
        if last[0] == "intent":
            interrupted += 1
            candidates.insert(0, messages[-2][1:])
        unpruned = unpruned + 1 if all(m[0] != "done" for m in messages) else 1
        now = _check_at_rest(vault_path, max_backups=KEEP_BACKUPS + unpruned)
        assert now in candidates, where
        if last[0] == "intent" and now == candidates[1]:
            landed += 1
        assert now[0] >= known[0], where  # generations never go back
        known = now
    # The next save sweeps every temp file the killed saves left behind.
    leftovers = temp_files(vault_path)
    with Vault.open(vault_path, PASSPHRASE) as v:
        add_generic(v, "final", note="after the crashes")
        v.remove("final")
        assert v.generation == known[0] + 2
    generation, state = _check_at_rest(vault_path)
    assert (generation, state) == (known[0] + 2, known[1])
    assert len(list_backups(vault_path)) == KEEP_BACKUPS  # pruned again
    assert temp_files(vault_path) == []
    print(f"crash harness: seed {seed}, {rounds} kills, {interrupted} inside a save "
          f"({landed} after the rename), {len(leftovers)} temp files left, "
          f"save ~{save_seconds * 1000:.1f} ms")


# --- part 2: injected failures --------------------------------------------------------------

Installer = Callable[[pytest.MonkeyPatch, Path], None]


def _fail_write(code: int, *, half: bool) -> Installer:
    def install(mp: pytest.MonkeyPatch, _: Path) -> None:
        def write_all(fd: int, data: bytes) -> None:
            if half:
                os.write(fd, data[: len(data) // 2])
            raise OSError(code, os.strerror(code))
        mp.setattr(botvault.vault_file, "_write_all", write_all)
    return install


def _fail_fsync(mp: pytest.MonkeyPatch, _: Path) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    mp.setattr(os, "fsync", fsync)


def _fail_replace(mp: pytest.MonkeyPatch, _: Path) -> None:
    def replace(src: object, dst: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    mp.setattr(os, "replace", replace)


def _corrupt_write(mp: pytest.MonkeyPatch, _: Path) -> None:
    """The disk silently stores one flipped bit: the read-back check must catch it."""
    real = botvault.vault_file._write_all

    def write_all(fd: int, data: bytes) -> None:
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0x10
        real(fd, bytes(damaged))
    mp.setattr(botvault.vault_file, "_write_all", write_all)


FAILURES = [
    pytest.param(_fail_write(errno.ENOSPC, half=False), errno.ENOSPC, id="write-ENOSPC"),
    pytest.param(_fail_write(errno.EIO, half=False), errno.EIO, id="write-EIO"),
    pytest.param(_fail_write(errno.ENOSPC, half=True), errno.ENOSPC, id="half-write-ENOSPC"),
    pytest.param(_fail_write(errno.EIO, half=True), errno.EIO, id="half-write-EIO"),
    pytest.param(_fail_fsync, errno.EIO, id="fsync-EIO"),
    pytest.param(_fail_replace, errno.EIO, id="replace-EIO"),
    pytest.param(_corrupt_write, None, id="silent-corruption-caught-on-read-back"),
]


def _matching(code: int | None) -> str:
    """What the OSError's message must say."""
    return re.escape(os.strerror(code)) if code is not None else "read back differs"



@contextmanager
def _failing(monkeypatch: pytest.MonkeyPatch, install: Installer, path: Path) -> Iterator[None]:
    with monkeypatch.context() as mp:
        install(mp, path)
        yield


@pytest.fixture
def populated(vault: Vault) -> Vault:
    add_generic(vault, "alpha", note="one")
    add_generic(vault, "beta", note="two")
    vault.edit("alpha", note="three")
    return vault


@pytest.mark.parametrize(("install", "code"), FAILURES)
@pytest.mark.parametrize("operation", ["add", "edit", "remove"])
def test_failed_save_leaves_the_file_byte_identical(
        populated: Vault, vault_path: Path, monkeypatch: pytest.MonkeyPatch,
        install: Installer, code: int | None, operation: str) -> None:
    v = populated
    before = vault_path.read_bytes()
    generation, state = v.generation, snapshot(v)
    ops: dict[str, Callable[[], object]] = {
        "add": lambda: add_generic(v, "doomed"),
        "edit": lambda: v.edit("alpha", note="doomed"),
        "remove": lambda: v.remove("beta"),
    }
    with _failing(monkeypatch, install, vault_path), \
            pytest.raises(OSError, match=_matching(code)) as caught:
        ops[operation]()
    assert caught.value.errno == code
    assert vault_path.read_bytes() == before
    assert temp_files(vault_path) == []
    assert (v.generation, snapshot(v)) == (generation, state)  # nothing half-applied
    # The same Vault object saves normally afterwards.
    add_generic(v, "next", note="after the failure")
    with Vault.open(vault_path, PASSPHRASE) as reopened:
        assert snapshot(reopened) == {**state, "next": "after the failure"}
        assert reopened.generation == generation + 1
        assert all(b.entries >= 0 for b in reopened.backups())
    assert temp_files(vault_path) == []


@pytest.mark.parametrize(("install", "code"), FAILURES[:5])
def test_failed_create_leaves_nothing(vault_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      install: Installer, code: int | None) -> None:
    with _failing(monkeypatch, install, vault_path), \
            pytest.raises(OSError, match=_matching(code)):
        Vault.create(vault_path, PASSPHRASE, kdf=botvault.crypto.CHEAPEST_TEST_ONLY)
    assert not vault_path.exists()
    assert temp_files(vault_path) == []
    with Vault.create(vault_path, PASSPHRASE, kdf=botvault.crypto.CHEAPEST_TEST_ONLY) as v:
        add_generic(v, "alpha")
    with Vault.open(vault_path, PASSPHRASE) as reopened:
        assert snapshot(reopened) == {"alpha": ""}


def test_directory_fsync_failure_after_rename_is_reported_consistently(
        populated: Vault, vault_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save either fails and leaves the file as it was, or succeeds: never both."""
    v = populated
    before = vault_path.read_bytes()
    parent_inode = vault_path.parent.stat().st_ino
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.fstat(fd).st_ino == parent_inode:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    with monkeypatch.context() as mp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp.setattr(os, "fsync", fsync)
        try:
            add_generic(v, "doomed")
            raised = False
        except OSError:
            raised = True
    with Vault.open(vault_path, PASSPHRASE) as reopened:
        on_disk = snapshot(reopened)
    if raised:
        assert vault_path.read_bytes() == before, "the save raised but the file changed"
        assert "doomed" not in on_disk
    else:
        assert "doomed" in on_disk
        assert "doomed" in v
        assert any("power cut" in str(w.message) for w in caught)


def test_cli_add_with_a_failing_disk_exits_12_with_one_line(
        populated: Vault, vault_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = vault_path.read_bytes()
    passfile = vault_path.parent.parent / "passphrase"
    passfile.write_text(f"{PASSPHRASE}\n")
    passfile.chmod(0o600)
    monkeypatch.setattr(botvault.vault_file, "_write_all", _enospc_half)
    result = CliRunner().invoke(
        app, ["add", "gamma", "--exchange", "generic", "--api-key", "k", "--general",
              "read-only", "--withdrawal", "none", "--secret-stdin", "--passphrase-file",
              str(passfile)], input="secret\n")
    assert result.exit_code == 12  # the OS refused: not 1, which means a bug
    errors = [line for line in result.stderr.splitlines() if line.startswith("botvault:")]
    assert errors == [f"botvault: error: {os.strerror(errno.ENOSPC)}"]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert vault_path.read_bytes() == before
    assert temp_files(vault_path) == []


def _enospc_half(fd: int, data: bytes) -> None:
    os.write(fd, data[: len(data) // 2])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

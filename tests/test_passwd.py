"""Passphrase change: a fresh data key for every record and backup, all or nothing.

Failures are injected through the seams the tests own (`vault_file._write_all`, os functions
patched in this process) or with a real SIGKILL in a forked child; the disk-full case also
runs on a real, small tmpfs when the tests run as root.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import botvault.vault_file
from botvault import codec, crypto, fileformat, seen_generations
from botvault._testing import cheap_kdf
from botvault.cli.main import app
from botvault.crypto import FLOOR, KdfParams, Sealer, strengthened
from botvault.errors import AuthenticationError, FormatError, PartialWriteError
from botvault.open_vault import Vault
from botvault.vault_file import backup_dir, list_backups
from tests.conftest import PASSPHRASE
from tests.helpers.vaultfiles import add_generic, snapshot, temp_files

NEW = "a completely different passphrase"

# Standard input holds the passphrase only with this flag (one meaning per command).
STDIN = ("--passphrase-stdin",)


def _save_many(v: Vault, n: int) -> None:
    for i in range(n):
        add_generic(v, f"e{i}", note=f"note {i}")


def _generation_files(path: Path) -> list[Path]:
    """The vault and every backup (temp files are not generations)."""
    return [path, *(file for _, file in list_backups(path))]


def _all_temps(path: Path) -> list[Path]:
    backups = backup_dir(path)
    extra = sorted(backups.glob(".gen-*.tmp-*")) if backups.is_dir() else []
    return [*temp_files(path), *extra]


def _opens_with(path: Path, passphrase: str) -> bool:
    try:
        Vault.open(path, passphrase).close()
    except AuthenticationError:
        return False
    return True


def _passphrases_of_generations(path: Path) -> set[str]:
    """Which of the two passphrases open the generations on disk (each opens exactly one)."""
    found = set()
    for file in _generation_files(path):
        old, new = _opens_with(file, PASSPHRASE), _opens_with(file, NEW)
        assert old != new, file
        found.add(PASSPHRASE if old else NEW)
    return found


def _tree(path: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}
    files.update({f"backups/{p.name}": p.read_bytes() for p in backup_dir(path).iterdir()})
    return files


# -- item 1: a fresh data key -------------------------------------------------------------


def test_an_old_copy_with_the_old_passphrase_opens_only_itself(vault: Vault,
                                                               vault_path: Path,
                                                               tmp_path: Path) -> None:
    _save_many(vault, 3)
    old_copy = tmp_path / "stolen" / "vault.bv"
    old_copy.parent.mkdir(mode=0o700)
    old_copy.write_bytes(vault_path.read_bytes())
    old_copy.chmod(0o600)
    old_key = codec.unwrap(fileformat.parse(old_copy.read_bytes()).header, PASSPHRASE.encode())
    vault.change_passphrase(NEW)
    add_generic(vault, "added-later", secret="only-after-the-change")
    for file in _generation_files(vault_path):
        with pytest.raises(AuthenticationError):
            Vault.open_with_key(file, old_key)
        with pytest.raises(AuthenticationError):
            Vault.open(file, PASSPHRASE)
    with Vault.open(old_copy, PASSPHRASE) as copy:  # the copy itself still opens
        assert "added-later" not in copy
        assert len(copy) == 3


def test_every_record_and_backup_is_resealed(vault: Vault, vault_path: Path) -> None:
    _save_many(vault, 7)
    before = {file.name: fileformat.parse(file.read_bytes())
              for file in _generation_files(vault_path)}
    old_nonces = {r.nonce for parsed in before.values() for r in parsed.records}
    state = snapshot(vault)
    vault.change_passphrase(NEW)
    assert snapshot(vault) == state
    files = _generation_files(vault_path)
    assert len(files) == 1 + botvault.vault_file.KEEP_BACKUPS
    for file in files:
        parsed = fileformat.parse(file.read_bytes())
        assert not {r.nonce for r in parsed.records} & old_nonces
    with Vault.open(vault_path, NEW) as again:
        assert snapshot(again) == state
        assert again.generation == vault.generation
    assert _all_temps(vault_path) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=600), min_size=1, max_size=8))
def test_reseal_carries_any_record_over_unchanged(plaintexts: list[bytes]) -> None:
    """Generic: whatever a record holds (an internal record, say), it is re-sealed."""
    vault_id = os.urandom(16)
    old = codec.Keys.from_data_key(os.urandom(32))
    new = codec.Keys.from_data_key(os.urandom(32))
    old_sealer = Sealer(old.entry)
    records = []
    for plain in plaintexts:
        entry_id = os.urandom(16)
        nonce, ct = old_sealer.seal(plain, fileformat.record_aad(vault_id, entry_id))
        records.append(fileformat.RawRecord(entry_id, nonce, ct))
    again = codec.reseal(records, old, Sealer(new.entry), vault_id, {})
    for before, after, plain in zip(records, again, plaintexts, strict=True):
        assert after.entry_id == before.entry_id
        aad = after.aad(vault_id)
        assert crypto.open_sealed(new.entry, after.nonce, after.ciphertext, aad) == plain
        with pytest.raises(AuthenticationError):
            crypto.open_sealed(old.entry, after.nonce, after.ciphertext, aad)


# -- item 2: backups follow, or nothing changes ---------------------------------------------


def _damage(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[-1] ^= 1
    file.unlink()  # a backup is a hard link to an old vault file: replace, don't edit
    file.write_bytes(bytes(data))
    file.chmod(0o600)


def test_a_damaged_backup_stops_everything(vault: Vault, vault_path: Path) -> None:
    _save_many(vault, 6)
    generations = [g for g, _ in list_backups(vault_path)]
    _damage(list_backups(vault_path)[2][1])
    before = _tree(vault_path)
    with pytest.raises(FormatError) as caught:
        vault.change_passphrase(NEW)
    assert f"generation {generations[2]} are damaged; nothing was changed" in str(caught.value)
    assert _tree(vault_path) == before


def test_cli_passwd_reports_a_damaged_backup_and_drops_it_on_request(
        vault: Vault, vault_path: Path, tmp_path: Path) -> None:
    _save_many(vault, 6)
    damaged = list_backups(vault_path)[1][0]
    _damage(list_backups(vault_path)[1][1])
    new_file = tmp_path / "new-pass"
    new_file.write_text(NEW + "\n")
    new_file.chmod(0o600)
    before = _tree(vault_path)
    result = CliRunner().invoke(app, [*STDIN, "passwd", "--new-passphrase-file", str(new_file)],
                                input=PASSPHRASE + "\n")
    assert result.exit_code == 8
    assert f"backups of generation {damaged} are damaged" in result.stderr
    assert "--drop-damaged-backups" in result.stderr
    assert _tree(vault_path) == before
    result = CliRunner().invoke(app, [*STDIN, "passwd", "--new-passphrase-file", str(new_file),
                                      "--drop-damaged-backups"], input=PASSPHRASE + "\n")
    assert result.exit_code == 0, result.stderr
    assert f"removed the damaged backups of generation {damaged}" in result.stderr
    assert damaged not in [g for g, _ in list_backups(vault_path)]
    assert _passphrases_of_generations(vault_path) == {NEW}


def _nth_call_fails(n: int, error: int) -> Callable[..., Callable[..., object]]:
    calls = [0]

    def wrap(real: Callable[..., object]) -> Callable[..., object]:
        def failing(*args: object, **kwargs: object) -> object:
            calls[0] += 1
            if calls[0] == n:
                raise OSError(error, os.strerror(error))
            return real(*args, **kwargs)
        return failing
    return wrap


def _attempt(v: Vault, passphrase: str) -> Exception | None:
    try:
        v.change_passphrase(passphrase)
    except (OSError, PartialWriteError) as exc:
        return exc
    return None


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO])
def test_a_failing_write_or_fsync_at_any_point_changes_nothing(
        vault: Vault, vault_path: Path, monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    _save_many(vault, 6)
    state = snapshot(vault)
    for target in ("write", "fsync"):
        n = 1
        while True:
            before = _tree(vault_path)
            wrap = _nth_call_fails(n, error)
            with monkeypatch.context() as mp:
                if target == "write":
                    mp.setattr(botvault.vault_file, "_write_all",
                               wrap(botvault.vault_file._write_all))
                else:
                    mp.setattr(os, "fsync", wrap(os.fsync))
                outcome = _attempt(vault, NEW if n % 2 else PASSPHRASE)
            if isinstance(outcome, OSError):
                assert outcome.errno == error
                assert _tree(vault_path) == before  # byte for byte, no temp file left
                n += 1
                continue
            if isinstance(outcome, PartialWriteError):
                # Syncing the removal of the old backups failed: the vault itself is
                # unchanged, and the message says that the backups are gone.
                assert "the vault was not changed" in str(outcome)
                assert vault_path.read_bytes() == before[vault_path.name]
                assert list_backups(vault_path) == []
                assert _all_temps(vault_path) == []
                n += 1
                continue
            break  # the n-th call came after the commit: it succeeded
        assert n > 3  # every write or fsync before the commit was made to fail
        with Vault.open(vault_path, NEW if n % 2 else PASSPHRASE) as v:
            assert snapshot(v) == state


def test_a_failing_removal_says_what_it_removed(vault: Vault, vault_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _save_many(vault, 6)
    real_unlink = Path.unlink
    calls = [0]

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.parent == backup_dir(vault_path) and self.name.startswith("gen-"):
            calls[0] += 1
            if calls[0] == 3:
                raise OSError(errno.EIO, "Input/output error")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(PartialWriteError) as caught:
        vault.change_passphrase(NEW)
    assert "the vault was not changed" in str(caught.value)
    assert "were already removed" in str(caught.value)
    monkeypatch.undo()
    assert _all_temps(vault_path) == []
    assert _passphrases_of_generations(vault_path) == {PASSPHRASE}
    assert len(list_backups(vault_path)) == botvault.vault_file.KEEP_BACKUPS - 2


def _kill_at(path: str, n: int) -> None:
    """Child: change the passphrase, SIGKILLed at the n-th file operation."""
    with cheap_kdf():
        count = [0]

        def counted(real: Callable[..., object]) -> Callable[..., object]:
            def wrapper(*args: object, **kwargs: object) -> object:
                count[0] += 1
                if count[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)
            return wrapper

        botvault.vault_file._write_all = counted(botvault.vault_file._write_all)  # type: ignore[assignment]
        os.fsync = counted(os.fsync)  # type: ignore[assignment]
        os.replace = counted(os.replace)  # type: ignore[assignment]
        Path.unlink = counted(Path.unlink)  # type: ignore[method-assign,assignment]
        with Vault.open(path, PASSPHRASE) as v:
            v.change_passphrase(NEW)
    os._exit(0)


@pytest.mark.slow
def test_a_kill_at_any_step_never_leaves_both_passphrases(vault: Vault,
                                                          vault_path: Path) -> None:
    _save_many(vault, 6)
    state = snapshot(vault)
    original = _tree(vault_path)
    ctx = multiprocessing.get_context("fork")
    n, finished = 1, False
    while not finished:
        for name, data in original.items():  # start each round from the same files
            target = (backup_dir(vault_path) / name.removeprefix("backups/")
                      if name.startswith("backups/") else vault_path.parent / name)
            target.unlink(missing_ok=True)
            target.write_bytes(data)
            target.chmod(0o600)
        for leftover in _all_temps(vault_path):
            leftover.unlink()
        # Putting the files back is a rollback, on purpose here: forget the record of it.
        seen_generations.record_path(vault_path, vault.vault_id).unlink(missing_ok=True)
        for extra in backup_dir(vault_path).iterdir():
            if f"backups/{extra.name}" not in original:
                extra.unlink()
        proc = ctx.Process(target=_kill_at, args=(str(vault_path), n))
        proc.start()
        proc.join(60)
        finished = proc.exitcode == 0
        if not finished:
            assert proc.exitcode == -signal.SIGKILL
        (which,) = _passphrases_of_generations(vault_path)  # exactly one, whatever the step
        with Vault.open(vault_path, which) as v:
            assert snapshot(v) == state
            add_generic(v, "after")  # the next save removes what the kill left behind
        assert _all_temps(vault_path) == []
        assert _passphrases_of_generations(vault_path) == {which}
        n += 1
    assert n > 10


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux",
                    reason="mounting a tmpfs needs root on Linux")
def test_a_full_disk_changes_nothing(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir(mode=0o700)
    mount_bin, umount_bin = shutil.which("mount"), shutil.which("umount")
    if mount_bin is None or umount_bin is None:
        pytest.skip("no mount command")
    done = subprocess.run([mount_bin, "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr!r}")
    try:
        path = mount / "vault.bv"
        with Vault.create(path, PASSPHRASE, kdf=crypto.CHEAPEST_TEST_ONLY) as v:
            _save_many(v, 6)
            filler = mount / "filler"
            # Fill the disk until the re-encrypted copies no longer fit (hard-linked
            # backups share blocks with nothing once re-sealed).
            with open(filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:
                    pass
            filler_size = filler.stat().st_size
            os.truncate(filler, max(0, filler_size - 8192))
            before = _tree(path)
            with pytest.raises(OSError, match="No space left") as caught:
                v.change_passphrase(NEW)
            assert caught.value.errno == errno.ENOSPC
            before.pop("filler")
            after = _tree(path)
            after.pop("filler")
            assert after == before
            assert _passphrases_of_generations(path) == {PASSPHRASE}
            filler.unlink()
            v.change_passphrase(NEW)
            assert _passphrases_of_generations(path) == {NEW}
    finally:
        subprocess.run([umount_bin, str(mount)], check=False)


def test_temp_files_left_in_the_backups_dir_are_removed_by_the_next_save(
        vault: Vault, vault_path: Path) -> None:
    _save_many(vault, 2)
    leftover = backup_dir(vault_path) / ".gen-000000000001.bv.tmp-999-abcd"
    leftover.write_bytes(b"a whole copy under some passphrase")
    leftover.chmod(0o600)
    add_generic(vault, "next")
    assert not leftover.exists()


# -- the running agent ------------------------------------------------------------------------


@pytest.mark.slow
def test_passwd_locks_the_running_agent(tmp_path: Path) -> None:
    from tests.agent_support import PASSPHRASE as AGENT_PASS
    from tests.agent_support import make_vault, start, wait_exit

    keys = make_vault(tmp_path / "agent" / "vault.bv")
    info = start(keys)
    new_file = tmp_path / "new-pass"
    new_file.write_text(NEW + "\n")
    new_file.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "botvault", *STDIN, "passwd", "--vault", str(keys.path),
         "--new-passphrase-file", str(new_file)], input=AGENT_PASS + "\n",
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "BOTVAULT_PATH": str(keys.path)})
    assert done.returncode == 0, done.stderr
    assert "the running agent held the old key and was locked" in done.stdout
    assert wait_exit(info) == 0
    with Vault.open(keys.path, NEW) as v:
        assert "spot" in v


def test_an_agent_that_sees_a_new_key_locks_itself(vault: Vault, vault_path: Path) -> None:
    from botvault.agent.ops import Agent

    add_generic(vault, "a")
    agent = Agent(Vault.open(vault_path, PASSPHRASE), ttl=60, idle=60, allow_withdrawal=False)
    assert agent.handle({"op": "list"})["ok"] is True
    vault.change_passphrase(NEW)
    answer = agent.handle({"op": "get", "name": "a"})
    assert answer["ok"] is False
    assert "passphrase was changed" in str(answer)
    assert agent.time_left() == 0.0  # the server loop stops
    assert agent.handle({"op": "list"})["ok"] is False


# -- item 3: --upgrade-kdf never weakens --------------------------------------------------


params = st.builds(KdfParams, st.integers(FLOOR.memory_kib, 4 * 1024 * 1024),
                   st.integers(2, 64), st.integers(1, 16))


@given(params, params)
def test_an_upgrade_never_lowers_memory_passes_or_lanes(current: KdfParams,
                                                        proposed: KdfParams) -> None:
    upgraded = strengthened(current, proposed)
    stronger = (proposed.memory_kib > current.memory_kib
                or proposed.iterations > current.iterations
                or proposed.parallelism > current.parallelism)
    assert (upgraded is None) == (not stronger)
    if upgraded is not None:
        assert upgraded.memory_kib >= max(current.memory_kib, proposed.memory_kib)
        assert upgraded.iterations >= max(current.iterations, proposed.iterations)
        assert upgraded.parallelism >= max(current.parallelism, proposed.parallelism)


@pytest.mark.slow
def test_cli_upgrade_kdf_keeps_stronger_parameters_and_says_so(
        vault_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What calibration asks for depends on the machine's speed at that moment (a quiet
    # machine asked for 14 passes once); fix it, so that `strong` is stronger on every axis.
    import botvault.crypto

    monkeypatch.setattr(botvault.crypto, "calibrate",
                        lambda *_a, **_k: KdfParams(256 * 1024, 6, 2))
    strong = KdfParams(256 * 1024, 12, 4)
    Vault.create(vault_path, PASSPHRASE, kdf=strong).close()
    before = vault_path.read_bytes()
    result = CliRunner().invoke(app, [*STDIN, "passwd", "--upgrade-kdf", "--keep-passphrase"],
                                input=PASSPHRASE + "\n")
    assert result.exit_code == 0, result.stderr
    assert "already at least as strong" in result.stdout
    assert "nothing changed" in result.stdout
    assert vault_path.read_bytes() == before


def test_a_failure_after_the_commit_is_never_reported_as_one(vault: Vault, vault_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """Putting a backup in place after the vault was replaced fails: a warning, exit 0."""
    _save_many(vault, 6)
    real_replace = os.replace

    def replace(src: object, dst: object, **kwargs: object) -> None:
        if Path(str(dst)).parent == backup_dir(vault_path) and "gen-" in str(dst):
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    new_file = tmp_path / "new-pass"
    new_file.write_text(NEW + "\n")
    new_file.chmod(0o600)
    result = CliRunner().invoke(app, [*STDIN, "passwd", "--new-passphrase-file", str(new_file)],
                                input=PASSPHRASE + "\n")
    monkeypatch.undo()
    assert result.exit_code == 0, result.stderr
    assert "passphrase changed" in result.stdout
    assert "could not be kept" in result.stderr
    assert "left as it was" not in result.stderr
    assert list_backups(vault_path) == []  # removed, never left under the old passphrase
    assert _all_temps(vault_path) == []
    assert _passphrases_of_generations(vault_path) == {NEW}


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2000), st.binary(max_size=100))
def test_the_fast_seal_is_libsodiums_own(plaintext: bytes, aad: bytes) -> None:
    from nacl import bindings

    key, nonce = os.urandom(32), os.urandom(24)
    if crypto._fast_seal is None:
        pytest.skip("this PyNaCl has no private cffi module")
    assert crypto._fast_seal(key, nonce, plaintext, aad) == \
        bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)

"""API nonces through the Vault: per key, following renames, surviving removal."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botvault import InvalidInputError, Vault
from botvault.cli.main import app
from botvault.crypto import FLOOR
from botvault.errors import FormatError
from botvault.nonces import NonceStore, nonce_counter_id, nonce_state_path
from botvault.nonces import layout as nf
from botvault.nonces.marks import recorded_mark
from botvault.nonces.state_map import peek_file
from tests.conftest import PASSPHRASE, kraken_secret
from tests.test_nonces import flip


def _add(v: Vault, name: str, key: str = "SAMEKEY", unit: str = "ms") -> None:
    v.add(name, exchange="kraken-spot", api_key=key, api_secret=kraken_secret(),
          general="full", withdrawal="none", nonce_unit=unit)


def test_increasing_and_shared_between_vault_objects(vault: Vault, vault_path: Path) -> None:
    _add(vault, "a")
    other = Vault.open(vault_path, PASSPHRASE)
    values = [vault.next_nonce("a"), other.next_nonce("a"), vault.next_nonce("a")]
    assert values == sorted(values)
    assert len(set(values)) == 3
    block = vault.allocate_nonces("a", 100)
    assert len(block) == 100
    assert block[0] > values[-1]


def test_counter_follows_rename_and_outlives_removal(vault: Vault) -> None:
    _add(vault, "a")
    first = vault.allocate_nonces("a", 1000)[-1]
    vault.rename("a", "b")
    assert vault.next_nonce("b") > first
    last = vault.next_nonce("b")
    vault.remove("b")
    _add(vault, "c")  # the same api key again: the exchange remembers its nonces
    assert vault.next_nonce("c") > last
    _add(vault, "d", key="OTHERKEY")
    assert vault.peek_nonce("d")[0] is None


def test_unit_change_rules(vault: Vault) -> None:
    _add(vault, "a", unit="10ns")
    vault.next_nonce("a")
    with pytest.raises(InvalidInputError, match="cannot change the nonce unit"):
        vault.edit("a", nonce_unit="ms")
    assert vault.get("a").nonce_unit == "10ns"
    _add(vault, "b", key="K2", unit="ms")
    vault.next_nonce("b")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vault.edit("b", nonce_unit="us")
    assert any("will be rejected" in str(w.message) for w in caught)
    assert vault.get("b").nonce_unit == "us"


def test_peek_does_not_allocate(vault: Vault) -> None:
    _add(vault, "a")
    n = vault.next_nonce("a")
    assert vault.peek_nonce("a")[0] == n
    assert vault.peek_nonce("a")[0] == n
    assert vault.next_nonce("a") > n


# -- issue 10, item 13: a lost, truncated or older state file is noticed ---------------------

def _state(vault_path: Path) -> Path:
    return nonce_state_path(vault_path)


def _refused(v: Vault, name: str) -> FormatError:
    with pytest.raises(FormatError) as info:
        v.next_nonce(name)
    assert info.value.exit_code == 8
    assert info.value.hint is not None
    assert f"botvault nonce {name} --recover" in info.value.hint
    return info.value


@pytest.mark.filterwarnings("ignore::botvault.nonces.NonceAheadWarning")
def test_a_deleted_state_file_is_refused_after_a_large_count(vault: Vault,
                                                               vault_path: Path) -> None:
    _add(vault, "a")
    handed = vault.allocate_nonces("a", 1_000_000)[-1]  # about 17 minutes ahead of the clock
    generation = vault.generation
    vault.close()
    _state(vault_path).unlink()
    with Vault.open(vault_path, PASSPHRASE) as again:
        assert again.generation == generation  # the mark was recorded when it was handed out
        assert recorded_mark(again.get("a")) >= handed
        err = _refused(again, "a")  # before: a clock nonce, a million below `handed`
        assert "does not hold it" in err.message
        assert "deleted, truncated or put back from an older copy" in err.message
        said = again.recover_nonces("a")
        assert "at least the vault's recorded mark" in said[-1]
        assert again.next_nonce("a") > handed


@pytest.mark.filterwarnings("ignore::botvault.nonces.NonceAheadWarning")
def test_an_older_copy_of_the_state_file_is_refused(vault: Vault, vault_path: Path) -> None:
    _add(vault, "a")
    vault.next_nonce("a")
    vault.close()
    older = _state(vault_path).read_bytes()
    with Vault.open(vault_path, PASSPHRASE) as v:
        handed = v.allocate_nonces("a", 1_000_000)[-1]
    _state(vault_path).write_bytes(older)
    with Vault.open(vault_path, PASSPHRASE) as v:
        err = _refused(v, "a")
        assert "the file has it at" in err.message
        with pytest.raises(FormatError, match="is behind the vault"):
            v.peek_nonce("a")  # peek says so too, rather than showing the older value
        v.recover_nonces("a")
        assert v.next_nonce("a") > handed


@pytest.mark.filterwarnings("ignore::botvault.nonces.NonceAheadWarning")
def test_a_truncated_state_file_is_refused_with_the_recover_command(vault: Vault,
                                                                    vault_path: Path) -> None:
    _add(vault, "a")
    handed = vault.allocate_nonces("a", 10)[-1]
    vault.close()
    os.truncate(_state(vault_path), 4096)
    with Vault.open(vault_path, PASSPHRASE) as v:
        _refused(v, "a")
        said = v.recover_nonces("a")
        assert any("not a header plus whole chunks" in line for line in said)
        assert v.next_nonce("a") > handed


@pytest.mark.filterwarnings("ignore::botvault.nonces.NonceAheadWarning")
def test_recover_sets_the_counter_above_the_clock_plus_a_margin(vault: Vault) -> None:
    _add(vault, "a")
    vault.next_nonce("a")
    said = vault.recover_nonces("a")[-1]
    assert "the clock plus 3600 s" in said
    assert "rejects clock-based nonces" in said
    last, ahead = vault.peek_nonce("a")
    assert last is not None
    assert ahead > 3500


def test_every_save_records_the_marks_of_counters_used(vault: Vault, vault_path: Path) -> None:
    _add(vault, "a")
    vault.next_nonce("a")  # follows the clock: no save of its own
    assert recorded_mark(vault.get("a")) == 0
    _add(vault, "b", key="OTHERKEY")  # any save
    with NonceStore(_state(vault_path)) as s:
        mark = s.durable_mark(nonce_counter_id(vault.get("a")))
    assert mark is not None
    assert recorded_mark(vault.get("a")) == mark
    with Vault.open(vault_path, PASSPHRASE) as again:
        assert recorded_mark(again.get("a")) == mark  # sealed in the file
        assert again.get("a").nonce_mark is not None
        assert "nonce_mark" not in again.get("a").metadata()


@pytest.mark.filterwarnings("ignore::botvault.nonces.NonceAheadWarning")
def test_a_counter_run_ahead_is_recorded_each_time_its_distance_doubles(vault: Vault) -> None:
    _add(vault, "a")
    vault.allocate_nonces("a", 100_000)  # 100 s ahead: recorded
    first = vault.generation
    recorded = recorded_mark(vault.get("a"))
    assert recorded >= vault.peek_nonce("a")[0]  # type: ignore[operator]
    vault.allocate_nonces("a", 1000)  # still within twice the recorded distance: no save
    assert vault.generation == first
    for _ in range(3):  # past twice the distance: recorded again, with one save
        vault.allocate_nonces("a", 100_000)
    assert vault.generation == first + 1
    assert recorded_mark(vault.get("a")) > recorded


def test_a_save_goes_on_when_the_nonce_state_is_damaged(vault: Vault, vault_path: Path) -> None:
    _add(vault, "a")
    vault.next_nonce("a")
    flip(_state(vault_path), nf.vol_offset(0))  # the open store sees it through its map
    _add(vault, "b", key="OTHERKEY")  # records no mark from a file that does not verify
    assert recorded_mark(vault.get("a")) == 0
    _refused(vault, "a")


def test_the_mark_survives_a_passphrase_change_and_a_rotate_starts_afresh(
        vault: Vault, vault_path: Path) -> None:
    _add(vault, "a")
    vault.next_nonce("a")
    vault.record_nonce_marks()
    mark = recorded_mark(vault.get("a"))
    assert mark > 0
    vault.change_passphrase("another passphrase for this vault")
    with Vault.open(vault_path, "another passphrase for this vault") as again:
        assert recorded_mark(again.get("a")) == mark
        again.rotate("a", api_key="NEWKEY", api_secret=kraken_secret())
        assert recorded_mark(again.get("a")) == 0  # the mark was the old key's counter
        assert again.next_nonce("a") > 0  # a new key: nothing to refuse


def test_the_agent_records_the_marks_when_it_locks(tmp_path: Path) -> None:
    from botvault.agent import connect
    from tests import agent_support as support

    keys = support.make_vault(tmp_path / "agent" / "vault.bv")
    with support.running(keys) as info:
        with connect(keys.path) as client:
            handed = client.nonces("spot", 3)[-1]  # follows the clock: no save of its own
            client.lock()
        support.wait_exit(info)
    with Vault.open_with_key(keys.path, keys.data_key) as v:
        assert recorded_mark(v.get("spot")) >= handed
        _state(keys.path).unlink()
        _refused(v, "spot")


@pytest.mark.filterwarnings("ignore::botvault.nonces.NonceAheadWarning")
def test_an_agent_started_on_a_lost_state_file_refuses_with_exit_8(tmp_path: Path) -> None:
    from botvault.agent import connect
    from tests import agent_support as support

    keys = support.make_vault(tmp_path / "agent" / "vault.bv")
    with support.running(keys), connect(keys.path) as client:
        handed = client.nonces("spot", 3)[-1]
        client.lock()
    _state(keys.path).unlink()
    with support.running(keys) as info, connect(keys.path) as client:
        with pytest.raises(FormatError) as refused:
            client.nonces("spot", 1)
        assert refused.value.exit_code == 8
        assert refused.value.hint is not None
        assert "botvault nonce spot --recover" in refused.value.hint
        assert info.process is not None and info.process.poll() is None  # still serving
    with Vault.open_with_key(keys.path, keys.data_key) as v:
        v.recover_nonces("spot")
        assert v.next_nonce("spot") > handed


# -- through the command line -----------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "botvault", "--passphrase-stdin", *args],
                          input=f"{PASSPHRASE}\n",
                          text=True, capture_output=True, timeout=60, check=False,
                          cwd=Path(__file__).resolve().parents[1])


def _floor_vault(vault_path: Path) -> None:
    with Vault.create(vault_path, PASSPHRASE, kdf=FLOOR) as v:
        _add(v, "a")


def test_cli_refuses_a_lost_state_file_and_recovers(vault_path: Path) -> None:
    _floor_vault(vault_path)
    done = _cli("nonce", "a", "--count", "1000000")  # a real process, as a bot's helper
    assert done.returncode == 0, done.stderr
    handed = int(done.stdout.split()[-1])
    _state(vault_path).unlink()
    refused = _cli("nonce", "a")
    assert refused.returncode == 8, refused.stderr
    assert "botvault: error:" in refused.stderr
    assert "botvault nonce a --recover" in refused.stderr
    assert refused.stdout == ""
    recovered = _cli("nonce", "a", "--recover")
    assert recovered.returncode == 0, recovered.stderr
    assert "set to" in recovered.stdout and "at least the vault's recorded mark" in \
        recovered.stdout
    after = _cli("nonce", "a")
    assert after.returncode == 0, after.stderr
    assert int(after.stdout) > handed


def test_cli_recover_in_process(vault: Vault, vault_path: Path) -> None:
    _add(vault, "a")
    vault.next_nonce("a")
    vault.close()
    result = CliRunner().invoke(app, ["--passphrase-stdin", "nonce", "a", "--recover"],
                                input=f"{PASSPHRASE}\n")
    assert result.exit_code == 0, result.stderr
    assert "nonce counter set to" in result.stdout
    result = CliRunner().invoke(app, ["nonce", "a", "--recover", "--peek"],
                                input=f"{PASSPHRASE}\n")
    assert result.exit_code == 2


# -- item 15: peek on a read-only file system --------------------------------------------------

def test_peek_works_on_a_read_only_file_system(tmp_path: Path) -> None:
    from tests.test_nonces_hardening import small_tmpfs

    with small_tmpfs(tmp_path / "ro", "2m") as fs:
        path = fs / "vault.bv"
        _floor_vault(path)
        with Vault.open(path, PASSPHRASE) as v:
            handed = v.allocate_nonces("a", 5)[-1]
        remount = subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=False,  # noqa: S607 -- the system's mount, found on PATH as the tmpfs helper does
                                 capture_output=True)
        if remount.returncode != 0:
            pytest.skip("cannot remount read-only here")
        done = _cli("nonce", "a", "--peek", "--vault", str(path))
        # Before: the state file was opened for writing, EROFS.
        assert done.returncode == 0, done.stderr
        assert f"last: {handed} (ms)" in done.stdout
        with Vault.open(path, PASSPHRASE) as v:
            assert v.peek_nonce("a")[0] == handed
        assert peek_file(_state(path), "no-such-counter") is None


def test_peek_file_after_a_reboot_shows_the_mark_resumed_from(vault: Vault,
                                                             vault_path: Path) -> None:
    _add(vault, "a")
    handed = vault.next_nonce("a")
    counter = nonce_counter_id(vault.get("a"))
    same = peek_file(_state(vault_path), counter)
    assert same is not None and same[0] == handed
    rebooted = peek_file(_state(vault_path), counter, boot_id=lambda: "another boot")
    assert rebooted is not None and rebooted[0] == rebooted[1] >= handed

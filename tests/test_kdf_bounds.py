"""KDF parameters from a file are bounded by this machine before the KDF runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from botvault import crypto
from botvault.cli.main import app
from botvault.crypto import (
    CEILING,
    FLOOR,
    INIT_MAX_SECONDS,
    MAX_UNLOCK_SECONDS,
    KdfParams,
    check_machine,
    estimated_seconds,
    kdf_rate,
)
from botvault.errors import FormatError, InvalidInputError
from botvault.open_vault import Vault
from tests.conftest import PASSPHRASE
from tests.helpers.vaultfiles import with_params

GIB_KIB = 1024 * 1024


def _cli_command() -> list[str]:
    return [sys.executable, "-m", "botvault"]


@pytest.mark.slow
def test_a_header_at_the_ceiling_is_refused_before_the_kdf(vault_path: Path,
                                                            tmp_path: Path) -> None:
    Vault.create(vault_path, PASSPHRASE, kdf=FLOOR).close()
    vault_path.write_bytes(with_params(vault_path.read_bytes(), CEILING.memory_kib,
                                       CEILING.iterations, CEILING.parallelism))
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")
    pass_file.chmod(0o600)
    proc = subprocess.Popen(
        [*_cli_command(), "list", "--vault", str(vault_path), "--passphrase-file",
         str(pass_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BOTVAULT_PATH": str(vault_path)})
    _, status, usage = os.wait4(proc.pid, 0)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.stdout is not None
    proc.stdout.close()
    assert os.waitstatus_to_exitcode(status) == 8, err
    assert "Argon2id, 4096 MiB, 64 passes, 16 lanes" in err
    assert "refused on this machine" in err
    # The 4 GiB KDF never ran: the process never came near that much memory.
    assert usage.ru_maxrss < 512 * 1024  # KiB on Linux


def test_memory_above_half_the_ram_is_refused() -> None:
    params = KdfParams(3 * GIB_KIB, 2, 1)
    with pytest.raises(FormatError) as caught:
        check_machine(params, error=FormatError, memory_kib=4 * GIB_KIB, rate=1e12)
    assert caught.value.exit_code == 8
    assert "3072 MiB" in caught.value.message
    assert "half of this machine's 4096 MiB" in caught.value.message
    check_machine(params, error=FormatError, memory_kib=8 * GIB_KIB, rate=1e12)


def test_an_estimated_time_above_the_limit_is_refused() -> None:
    params = KdfParams(GIB_KIB, 64, 1)
    rate = GIB_KIB * 64 / 40.0  # 40 s at this rate
    with pytest.raises(FormatError) as caught:
        check_machine(params, error=FormatError, memory_kib=64 * GIB_KIB, rate=rate)
    assert "about 40 s here, above the limit of 30 s" in caught.value.message
    check_machine(params, error=FormatError, memory_kib=64 * GIB_KIB, rate=rate * 2)


@given(st.integers(FLOOR.memory_kib, CEILING.memory_kib), st.integers(2, 64),
       st.integers(1, 16), st.floats(1e3, 1e9))
def test_whatever_init_accepts_opens_even_at_half_the_speed(memory: int, passes: int,
                                                          lanes: int, rate: float) -> None:
    params = KdfParams(memory, passes, lanes)
    ram = 64 * GIB_KIB
    try:
        check_machine(params, error=InvalidInputError, limit=INIT_MAX_SECONDS,
                      memory_kib=ram, rate=rate)
    except InvalidInputError:
        return
    check_machine(params, error=FormatError, limit=MAX_UNLOCK_SECONDS, memory_kib=ram,
                  rate=rate / 2)


def test_init_refuses_what_open_would_refuse(vault_path: Path) -> None:
    # Today's ceiling, which init used to accept and then take minutes to create.
    result = CliRunner().invoke(app, ["init", "--kdf-memory", "4096", "--kdf-iterations", "64",
                                      "--kdf-parallelism", "16"], input="x\n")
    assert result.exit_code == 2
    assert "refused on this machine" in result.stderr
    assert not vault_path.exists()


def test_calibration_stays_within_what_init_accepts() -> None:
    params = crypto.calibrate(0.05, memory_kib=FLOOR.memory_kib, parallelism=1)
    check_machine(params, error=InvalidInputError, limit=INIT_MAX_SECONDS)
    assert estimated_seconds(params, kdf_rate(), os.cpu_count() or 1) <= INIT_MAX_SECONDS


@pytest.mark.slow
def test_the_largest_passes_init_accepts_still_open(vault_path: Path) -> None:
    """At the floor memory, a vault with the most passes init lets through opens for real."""
    accepted = 0
    for passes in range(2, CEILING.iterations + 1):
        try:
            check_machine(KdfParams(FLOOR.memory_kib, passes, 1), error=InvalidInputError,
                          limit=INIT_MAX_SECONDS)
        except InvalidInputError:
            break
        accepted = passes
    assert accepted >= 2
    largest = KdfParams(FLOOR.memory_kib, accepted, 1)
    Vault.create(vault_path, PASSPHRASE, kdf=largest).close()
    with Vault.open(vault_path, PASSPHRASE) as v:
        assert v.kdf == largest

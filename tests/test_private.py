"""One rule for what is private (botvault.private), applied by every command and by doctor.

The table below puts each case through the command that opens that path AND through
`doctor`, and checks they agree: a refused path (exit 7 or 8) is a failed doctor finding
for that path, an accepted one is none. Special files (FIFO, socket, device, directory) are
refused at once: every case runs under an alarm, so a command that blocks fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pytest
from typer.testing import CliRunner

from botvault import private
from botvault._testing import CHEAPEST_TEST_ONLY
from botvault.cli.main import app
from botvault.errors import FormatError, InsecurePermissionsError
from botvault.open_vault import Vault
from botvault.vault_file import backup_dir, lock_path
from tests.conftest import PASSPHRASE
from tests.helpers.files import private as private_file
from tests.helpers.vaultfiles import add_generic

NOBODY = 65534
IS_ROOT = os.geteuid() == 0
ALARM = 20  # seconds: far above any honest run of one command, far below a hang


@pytest.fixture
def alarm() -> Iterator[None]:
    """Turn a command that blocks (on a FIFO, a device) into a failure, not a hung run."""
    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError("the command blocked")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(ALARM)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    return private_file(tmp_path / "pass", PASSPHRASE + "\n")


def _made(vault_path: Path) -> Path:
    """A vault with one entry, a backup and nonce state: every file the table touches."""
    with Vault.create(vault_path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY) as v:
        add_generic(v, "alpha")
        v.edit("alpha", note="second generation")
        v.allocate_nonces("alpha", 1)
    return vault_path


# -- mutations -------------------------------------------------------------------------------


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path, 0o600)


def _replace_with_socket(path: Path) -> None:
    path.unlink()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))  # the file stays after close; nothing listens on it
    s.close()
    os.chmod(path, 0o600)


def _replace_with_device(path: Path) -> None:
    path.unlink()
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir(mode=0o700)


def _replace_dir_with_fifo(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
    os.mkfifo(path, 0o600)


def _chmod(mode: int) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        os.chmod(path, mode)
    return change


def _chown_nobody(path: Path) -> None:
    os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


def _symlink_to_copy(path: Path) -> None:
    real = path.with_name(path.name + ".real")
    os.rename(path, real)
    path.symlink_to(real)


# -- the table -------------------------------------------------------------------------------

TARGETS: dict[str, Callable[[Path], Path]] = {
    "vault": lambda v: v,
    "dir": lambda v: v.parent,
    "lock": lock_path,
    "nonces": lambda v: v.with_name(v.name + ".nonces"),
    "backups": backup_dir,
    "backup": lambda v: sorted(backup_dir(v).iterdir())[0],
}
# The command that opens each target (run with --passphrase-file).
COMMANDS: dict[str, list[str]] = {
    "vault": ["list"], "dir": ["list"], "lock": ["edit", "alpha", "--note", "x"],
    "nonces": ["nonce", "alpha"], "backups": ["edit", "alpha", "--note", "y"],
    "backup": ["restore", "--list"],
}


@dataclass(frozen=True)
class Case:
    target: str
    change: Callable[[Path], None]
    expect: int  # the command's exit code: 0 accepted, 7 insecure, 8 not a usable file
    root: bool = False


CASES: dict[str, Case] = {
    "vault-private": Case("vault", _chmod(0o600), 0),
    "vault-readonly": Case("vault", _chmod(0o400), 0),
    "vault-0644": Case("vault", _chmod(0o644), 7),
    "vault-0640": Case("vault", _chmod(0o640), 7),
    "vault-0620": Case("vault", _chmod(0o620), 7),
    "vault-symlink": Case("vault", _symlink_to_copy, 7),
    "vault-fifo": Case("vault", _replace_with_fifo, 8),
    "vault-socket": Case("vault", _replace_with_socket, 8),
    "vault-device": Case("vault", _replace_with_device, 8, root=True),
    "vault-directory": Case("vault", _replace_with_dir, 8),
    "vault-foreign": Case("vault", _chown_nobody, 7, root=True),
    "dir-0755": Case("dir", _chmod(0o755), 0),
    "dir-0775": Case("dir", _chmod(0o775), 7),
    "dir-0777": Case("dir", _chmod(0o777), 7),
    "dir-1777-sticky": Case("dir", _chmod(0o1777), 7),
    "dir-1770-sticky": Case("dir", _chmod(0o1770), 7),
    "dir-foreign": Case("dir", _chown_nobody, 7, root=True),
    "lock-0644": Case("lock", _chmod(0o644), 7),
    "lock-fifo": Case("lock", _replace_with_fifo, 8),
    "lock-symlink": Case("lock", _symlink_to_copy, 7),
    "nonces-0644": Case("nonces", _chmod(0o644), 0),  # not secret: others may read it
    "nonces-0620": Case("nonces", _chmod(0o620), 7),
    "nonces-fifo": Case("nonces", _replace_with_fifo, 8),
    "nonces-directory": Case("nonces", _replace_with_dir, 8),
    "nonces-foreign": Case("nonces", _chown_nobody, 7, root=True),
    "backups-0777": Case("backups", _chmod(0o777), 7),
    "backups-1777-sticky": Case("backups", _chmod(0o1777), 7),
    "backups-fifo": Case("backups", _replace_dir_with_fifo, 8),
    "backup-0644": Case("backup", _chmod(0o644), 7),
    "backup-fifo": Case("backup", _replace_with_fifo, 8),
}


def _cli(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, input="")
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


def _doctor_fails(vault_path: Path, passphrase_file: Path, target: Path) -> bool:
    """Does doctor report a failed permissions finding naming `target`?"""
    code, out, _ = _cli(["doctor", "--json", "--vault", str(vault_path),
                         "--passphrase-file", str(passphrase_file)])
    assert code in (0, 10)
    findings = json.loads(out)
    return any(f["check"] == "vault-permissions" and f["severity"] == "fail"
               and str(target) in f["where"] for f in findings)


@pytest.mark.parametrize("name", list(CASES))
def test_command_and_doctor_agree(name: str, tmp_path: Path, passphrase_file: Path,
                                  alarm: None) -> None:
    case = CASES[name]
    if case.root and not IS_ROOT:
        pytest.skip("needs root (chown to another uid, mknod)")
    vault_path = _made(tmp_path / "store" / "vault.bv")
    target = TARGETS[case.target](vault_path)
    case.change(target)
    code, _, err = _cli([*COMMANDS[case.target], "--vault", str(vault_path),
                         "--passphrase-file", str(passphrase_file)])
    assert code == case.expect, err
    if case.expect:
        assert err.startswith("botvault: error: "), err
        assert str(target) in err
    assert _doctor_fails(vault_path, passphrase_file, target) == (case.expect != 0)


def test_writable_vault_dir_says_which_chmod(tmp_path: Path, passphrase_file: Path) -> None:
    vault_path = _made(tmp_path / "store" / "vault.bv")
    os.chmod(vault_path.parent, 0o777)  # noqa: S103 -- the insecure mode under test
    code, _, err = _cli(["list", "--vault", str(vault_path), "--passphrase-file",
                         str(passphrase_file)])
    assert code == 7
    assert f"hint: run: chmod 700 {vault_path.parent}" in err


def test_a_sticky_shared_dir_gets_a_private_location_never_a_chmod(
        tmp_path: Path, passphrase_file: Path) -> None:
    """Issue 16: a vault in /tmp's kind of directory (1777) was told `chmod 700 /tmp`."""
    vault_path = _made(tmp_path / "store" / "vault.bv")
    os.chmod(vault_path.parent, 0o1777)  # noqa: S103 -- the insecure mode under test
    code, _, err = _cli(["list", "--vault", str(vault_path), "--passphrase-file",
                         str(passphrase_file)])
    assert code == 7
    assert "sticky bit" in err
    assert "chmod 700" not in err and "mkdir -m 700" in err


# -- passphrase file -------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "expect"), [
    (_chmod(0o620), 7),  # others could write it: accepted before this rule (issue 11)
    (_chmod(0o602), 7),
    (_symlink_to_copy, 7),
    (_replace_with_fifo, 8),
    (_replace_with_dir, 8),
])
def test_passphrase_file_rule(change: Callable[[Path], None], expect: int, tmp_path: Path,
                              passphrase_file: Path, alarm: None) -> None:
    vault_path = _made(tmp_path / "store" / "vault.bv")
    change(passphrase_file)
    code, _, err = _cli(["list", "--vault", str(vault_path), "--passphrase-file",
                         str(passphrase_file)])
    assert code == expect, err
    assert str(passphrase_file) in err


def test_check_private_file_is_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    os.chmod(path, 0o600)
    private.check_private_file(path, "test file")
    os.chmod(path, 0o660)
    with pytest.raises(InsecurePermissionsError, match="test file"):
        private.check_private_file(path, "test file")
    with pytest.raises(FormatError, match="directory, not a regular file"):
        private.check_private_file(tmp_path, "test file")


# -- through real processes ------------------------------------------------------------------


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "botvault", *args], env=env, text=True,
                          capture_output=True, timeout=60, check=False, input="")


@pytest.fixture
def floor_vault(tmp_path: Path, passphrase_file: Path) -> Path:
    from botvault.crypto import FLOOR

    path = tmp_path / "real" / "vault.bv"
    with Vault.create(path, PASSPHRASE, kdf=FLOOR) as v:
        add_generic(v, "alpha")
    return path


def test_real_process_fifo_vault_refused_at_once(floor_vault: Path, passphrase_file: Path
                                                 ) -> None:
    _replace_with_fifo(floor_vault)
    done = _run(["list", "--vault", str(floor_vault), "--passphrase-file",
                 str(passphrase_file)], dict(os.environ))
    assert done.returncode == 8, done.stderr
    assert "FIFO" in done.stderr and "Traceback" not in done.stderr


def test_real_process_sticky_dir_refused(floor_vault: Path, passphrase_file: Path) -> None:
    os.chmod(floor_vault.parent, 0o1777)  # noqa: S103 -- the insecure mode under test
    done = _run(["list", "--vault", str(floor_vault), "--passphrase-file",
                 str(passphrase_file)], dict(os.environ))
    assert done.returncode == 7, done.stderr
    assert "chmod 7" not in done.stderr and "mkdir -m 700" in done.stderr


def test_real_process_fifo_passphrase_file(floor_vault: Path, passphrase_file: Path) -> None:
    _replace_with_fifo(passphrase_file)
    done = _run(["list", "--vault", str(floor_vault), "--passphrase-file",
                 str(passphrase_file)], dict(os.environ))
    assert done.returncode == 8, done.stderr


# -- request locks (used by bots signing through the agent) ------------------------------------


@pytest.mark.parametrize(("change", "expected"), [
    ("dir-0755", InsecurePermissionsError), ("dir-symlink", InsecurePermissionsError),
    ("lock-0644", InsecurePermissionsError), ("lock-fifo", FormatError), ("fine", None)])
def test_request_lock_and_doctor_agree(change: str, expected: type[Exception] | None,
                                       tmp_path: Path, alarm: None) -> None:
    from botvault import agent
    from botvault.doctor import check_permissions
    from botvault.request_lock import requests_dir
    from tests.agent_support import make_vault, running

    keys = make_vault(tmp_path / "agentstore" / "vault.bv")
    directory = requests_dir(keys.path)
    with running(keys), agent.connect(keys.path) as client:
        with client.request_lock("spot"):
            pass  # creates the directory and the lock file
        lock = client.key_order("spot").path  # keyed by exchange and api key
        target = lock if change.startswith("lock") else directory
        if change == "dir-0755":
            os.chmod(directory, 0o755)  # noqa: S103 -- the insecure mode under test
        elif change == "dir-symlink":
            _symlink_to_copy(directory)
        elif change == "lock-0644":
            os.chmod(lock, 0o644)
        elif change == "lock-fifo":
            _replace_with_fifo(lock)
        if expected is None:
            with client.request_lock("spot"):
                pass
        else:
            with pytest.raises(expected, match=str(target)), client.request_lock("spot"):
                pass
    failed = {w for f in check_permissions(keys.path) if f.severity == "fail" for w in f.where}
    assert (str(target) in failed) == (expected is not None)

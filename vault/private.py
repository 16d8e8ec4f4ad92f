"""The one rule for what a private file and a private directory are.

Every path botvault opens for itself goes through here: the vault, its lock, backups and
nonce state, the agent's directory, socket and locks, the request locks, the passphrase
file. `doctor` asks the same functions, so what it reports is what the commands do.

A private file is a regular file (never a symlink, FIFO, socket, device or directory),
owned by the effective uid, with no permission bits for group or others. A *state* file
(the nonce state: not secret, but it decides nonces) may be readable by others, never
writable. A directory holding private files may be owned by us or root and must not be
writable by group or others, sticky bit or not (as OpenSSH's StrictModes: anyone who can
write there can plant the file before we create it, or delete and replace it). A *closed*
directory (the agent's, the request locks') is ours alone with no access for anyone else.

Special files are refused before anything could block on them: the path is lstat'ed first,
opened with O_NONBLOCK|O_NOFOLLOW, and the descriptor is checked again (the path may have
been swapped in between). A wrong kind of file is a `FormatError` (exit 8); a symlink, a
foreign owner or loose mode is an `InsecurePermissionsError` (exit 7).
"""

from __future__ import annotations

import enum
import errno
import fcntl
import os
import shlex
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import FormatError, InsecurePermissionsError, VaultError

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "DirRule",
    "FileRule",
    "Problem",
    "Reason",
    "check_dir",
    "check_private_file",
    "create_private_file",
    "dir_problem",
    "file_problem",
    "kind_of",
    "make_private_dirs",
    "open_private_file",
    "private_location_hint",
    "refuse",
    "shared_dir",
    "socket_problem",
]

FILE_MODE = 0o600
DIR_MODE = 0o700
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class FileRule(enum.Enum):
    PRIVATE = "private"  # no bits for group or others
    STATE = "state"  # readable by others allowed, never writable


class DirRule(enum.Enum):
    PARENT = "parent"  # ours or root's; no one else may write, sticky bit or not
    CLOSED = "closed"  # ours alone; no access at all for group or others


class Reason(enum.Enum):
    SYMLINK = "symlink"
    KIND = "kind"  # not a regular file / directory / socket
    OWNER = "owner"
    READABLE = "readable"  # others may read (or enter) it
    WRITABLE = "writable"  # others may write it


@dataclass(frozen=True)
class Problem:
    """Why a path is refused; `exception()` is what a command raises, doctor words the rest."""

    path: Path
    reason: Reason
    message: str
    hint: str | None
    error: type[VaultError]
    fix: str | None  # a shell command that fixes it, when there is one
    mode: int  # the st_mode seen
    owner: int  # the st_uid seen

    def exception(self) -> VaultError:
        return self.error(self.message, hint=self.hint)


def kind_of(mode: int) -> str:
    """What a file is, in words, for messages."""
    for test, name in ((stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISREG, "regular file")):
        if test(mode):
            return name
    return "special file"


def _q(path: Path) -> str:
    return shlex.quote(str(path))


def _problem(path: Path, st: os.stat_result, reason: Reason, message: str, hint: str | None,
             fix: str | None = None) -> Problem:
    error: type[VaultError] = FormatError if reason is Reason.KIND else InsecurePermissionsError
    return Problem(path, reason, message, hint, error, fix, st.st_mode, st.st_uid)


def _symlink(path: Path, st: os.stat_result, purpose: str) -> Problem:
    return _problem(path, st, Reason.SYMLINK, f"{purpose} {path} is a symlink; botvault does "
                    "not follow symlinks", "point botvault at the real file")


def _kind(path: Path, st: os.stat_result, purpose: str, wanted: str) -> Problem:
    hint = (f"move it away: mv {_q(path)} {_q(path)}.old" if st.st_uid == os.geteuid()
            else "it is someone else's; " + private_location_hint())
    return _problem(path, st, Reason.KIND, f"{purpose} {path} is a {kind_of(st.st_mode)}, not "
                    f"a {wanted}", hint)


def _foreign(path: Path, st: os.stat_result, purpose: str, *, chown: bool) -> Problem:
    fix = f"sudo chown {os.geteuid()} {_q(path)}" if chown else None
    return _problem(path, st, Reason.OWNER, f"{purpose} {path} is owned by uid {st.st_uid}, "
                    "not by you", f"run: {fix}" if fix else "someone else controls it; "
                    + private_location_hint(), fix)


def shared_dir(st: os.stat_result) -> bool:
    """A directory that is not the user's alone: owned by someone else, or sticky (1777,
    /tmp's kind: others are meant to write there). A hint never proposes to chmod or chown
    one of these: that would break it for every other user and service."""
    return stat.S_ISDIR(st.st_mode) and (st.st_uid != os.geteuid()
                                         or bool(st.st_mode & stat.S_ISVTX))


def _own_directory(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and not shared_dir(st) and not st.st_mode & 0o022


def private_location_hint() -> str:
    """Where to keep the vault instead of a directory that is not the user's alone."""
    # Words, not the path itself: this ground-layer module never imports vault_path.
    return ("keep the vault in a directory of your own: the default location (no --vault "
            "and no BOTVAULT_PATH), or make one with `mkdir -m 700 ~/botvault` and pass "
            "--vault ~/botvault/vault.bv (a shared directory is left as it is)")


def _loose(path: Path, st: os.stat_result, purpose: str, want: int) -> Problem:
    mode = stat.S_IMODE(st.st_mode)
    fix = None if shared_dir(st) else f"chmod {want:o} {_q(path)}"
    writable, readable = bool(mode & 0o022), bool(mode & 0o044)
    # Say exactly what others can do: that is what the user has to take away.
    what = ("readable and writable by" if writable and readable else "writable by" if writable
            else "readable by" if readable else "accessible by")
    return _problem(path, st, Reason.WRITABLE if writable else Reason.READABLE,
                    f"{purpose} {path} is {what} other users (mode {mode:o})",
                    f"run: {fix}" if fix else private_location_hint(), fix)


def file_problem(path: Path, st: os.stat_result, purpose: str,
                 rule: FileRule = FileRule.PRIVATE) -> Problem | None:
    """What is wrong with `st` (an lstat or fstat of `path`) as a private file, or None."""
    if stat.S_ISLNK(st.st_mode):
        return _symlink(path, st, purpose)
    if not stat.S_ISREG(st.st_mode):
        return _kind(path, st, purpose, "regular file")
    if st.st_uid != os.geteuid():
        # chown takes the file over: right for one made with sudo in the user's own
        # directory, never for someone else's file in a directory others share.
        return _foreign(path, st, purpose, chown=_own_directory(path.parent))
    if stat.S_IMODE(st.st_mode) & (0o022 if rule is FileRule.STATE else 0o077):
        return _loose(path, st, purpose, FILE_MODE)
    return None


def socket_problem(path: Path, st: os.stat_result, purpose: str) -> Problem | None:
    """What is wrong with `st` (an lstat of `path`) as a private unix socket, or None."""
    if stat.S_ISLNK(st.st_mode):
        return _symlink(path, st, purpose)
    if not stat.S_ISSOCK(st.st_mode):
        # Exit 7, not 8: a non-socket where the agent's socket should be may be planted.
        return replace(_kind(path, st, purpose, "socket"), error=InsecurePermissionsError,
                       hint=f"remove it if it is yours: rm {_q(path)}")
    if st.st_uid != os.geteuid():
        return _foreign(path, st, purpose, chown=False)
    if stat.S_IMODE(st.st_mode) & 0o077:
        return _loose(path, st, purpose, FILE_MODE)
    return None


def dir_problem(path: Path, st: os.stat_result, purpose: str,
                rule: DirRule = DirRule.PARENT) -> Problem | None:
    """What is wrong with `st` (an lstat of `path`) as a directory of private files."""
    if stat.S_ISLNK(st.st_mode):
        return replace(_symlink(path, st, purpose), hint="use the real directory")
    if not stat.S_ISDIR(st.st_mode):
        return _kind(path, st, purpose, "directory")
    if st.st_uid not in ((os.geteuid(),) if rule is DirRule.CLOSED else (os.geteuid(), 0)):
        return _foreign(path, st, purpose, chown=False)
    mode = stat.S_IMODE(st.st_mode)
    if rule is DirRule.CLOSED and mode & 0o077:
        return _loose(path, st, purpose, DIR_MODE)
    return _writable_dir(path, st, purpose) if mode & 0o022 else None


def _writable_dir(path: Path, st: os.stat_result, purpose: str) -> Problem:
    # The sticky bit does not help: another user can still create the names we are about
    # to create (a lock, a temp file, the nonce state) before we do.
    sticky = " (the sticky bit does not prevent that)" if st.st_mode & stat.S_ISVTX else ""
    loose = _loose(path, st, purpose, DIR_MODE)
    message = f"{loose.message}, who could replace what is in it{sticky}"
    if not shared_dir(st):
        return replace(loose, message=message)
    return replace(loose, message=message, fix=None, hint=private_location_hint())


def refuse(problem: Problem | None) -> None:
    """Raise `problem` as the error a command reports; nothing when there is none."""
    if problem is not None:
        raise problem.exception()


def check_dir(path: Path, purpose: str, rule: DirRule = DirRule.PARENT) -> None:
    """Raise the problem with directory `path`; FileNotFoundError when it does not exist."""
    refuse(dir_problem(path, os.lstat(path), purpose, rule))


def check_private_file(path: Path, purpose: str, rule: FileRule = FileRule.PRIVATE) -> None:
    """Raise the problem with `path` as a private file (without opening it);
    FileNotFoundError when there is none. To read it, use `open_private_file`, which also
    checks the descriptor it returns."""
    refuse(file_problem(path, os.lstat(path), purpose, rule))


def open_private_file(path: Path, flags: int, purpose: str, *,
                      rule: FileRule = FileRule.PRIVATE, create_mode: int = FILE_MODE) -> int:
    """A descriptor (blocking, close-on-exec) for the private file at `path`.

    Never follows a symlink and never blocks on a FIFO or device: those are refused before
    and after the open. FileNotFoundError when there is none (and no O_CREAT).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
    else:
        # Judged before the open, so that nothing is ever opened that could block or act
        # on being opened (a FIFO, a device); judged again on the descriptor below.
        refuse(file_problem(path, st, purpose, rule))
    try:
        fd = os.open(path, flags | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK, create_mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InsecurePermissionsError(f"{purpose} {path} is a symlink; botvault does "
                                           "not follow symlinks") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR, errno.ENODEV):
            # A socket or FIFO with no reader swapped in after the lstat.
            raise FormatError(f"{purpose} {path} is not a regular file",
                              hint=f"move it away: mv {_q(path)} {_q(path)}.old") from None
        raise
    try:
        refuse(file_problem(path, os.fstat(fd), purpose, rule))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private_file(path: Path, purpose: str, *, flags: int = os.O_WRONLY) -> int:
    """A descriptor for a new private file at `path`: created here (O_EXCL, so never an
    existing file and never through a symlink; FileExistsError when anything is there),
    mode 0600 whatever the umask. The one way botvault creates a file of its own."""
    fd = open_private_file(path, flags | os.O_CREAT | os.O_EXCL, purpose)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask can only clear bits; this also undoes an odd one
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parents as 0700 whatever the umask. Existing ones
    are left as they are (never loosened or "fixed"): the caller checks `directory` with
    `check_dir` and its own rule. The one way botvault creates a directory of its own."""
    missing = []
    for candidate in (directory, *directory.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    for new in reversed(missing):
        try:
            new.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process: checked by the caller
        os.chmod(new, DIR_MODE, follow_symlinks=False)  # mkdir's mode is masked by the umask

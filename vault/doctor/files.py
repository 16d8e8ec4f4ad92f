"""Checks on the vault's files, which need only its path: permissions, key derivation,
backups, and whether it sits in a synced or shared folder."""

from __future__ import annotations

import os
import pwd
import shlex
import stat
from collections.abc import Iterator
from pathlib import Path

from .. import fileformat, private, seen_generations, vault_file
from ..crypto import FLOOR, KdfParams
from ..errors import VaultError
from ..nonces import nonce_state_path
from ..open_vault import Vault
from ..request_lock import requests_dir
from .finding import Finding


def _q(path: Path) -> str:
    return shlex.quote(str(path))


# -- permissions ---------------------------------------------------------------------------


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _mode_problem(path: Path, st: os.stat_result, rule: private.FileRule | private.DirRule
                  ) -> Finding | None:
    """A finding for one file or directory that should be private, or None when it is.

    Whether it is refused is decided by `botvault.private`, the rule every command applies;
    this only words the answer (and adds advice that is not a refusal)."""
    is_dir = isinstance(rule, private.DirRule)
    problem = (private.dir_problem(path, st, "", rule) if isinstance(rule, private.DirRule)
               else private.file_problem(path, st, "", rule))
    if problem is None:
        return _listable(path, st) if is_dir else None
    kind = "directory" if is_dir else "file"
    reason = problem.reason
    if reason is private.Reason.SYMLINK:
        return Finding("vault-permissions", "fail", f"{path} is a symlink",
                       "botvault never follows symlinks for its own files: whoever can change "
                       "the link could point botvault at a file of their choosing.",
                       "replace the symlink with the real " + kind + ", or point --vault "
                       "(BOTVAULT_PATH) at the real location", (str(path),))
    if reason is private.Reason.KIND:
        return Finding("vault-permissions", "fail", f"{path} is not a {kind}",
                       f"It is a {private.kind_of(st.st_mode)}. botvault expects a {kind} here "
                       "and refuses to use this path.",
                       f"move it away (mv {_q(path)} {_q(path)}.old) or point --vault "
                       "(BOTVAULT_PATH) elsewhere" if st.st_uid == os.geteuid()
                       else private.private_location_hint(), (str(path),))
    if reason is private.Reason.OWNER:
        # The same answer as the refusal: a chown only of a file in a directory of the
        # user's own, never of someone else's directory (private.shared_dir).
        fix = (f"sudo chown {shlex.quote(_user())} {_q(path)}" if problem.fix else
               private.private_location_hint())
        return Finding("vault-permissions", "fail", f"{path} is owned by someone else",
                       f"The {kind} belongs to uid {st.st_uid}, not to you. Its owner can "
                       "read or replace it, so botvault refuses to use it.", fix, (str(path),))
    mode = stat.S_IMODE(st.st_mode)
    others_write = reason is private.Reason.WRITABLE
    risk = ("They could replace or damage what botvault reads, and botvault refuses to "
            "use it." if others_write else "Whoever copies the vault can try passphrases "
            "offline at their own pace, and botvault refuses to open it.")
    if is_dir and mode & stat.S_ISVTX:
        risk += (" The sticky bit does not help: they can create the names botvault is "
                 "about to create before it does.")
    return Finding("vault-permissions", "fail",
                   f"{path} is accessible by other users (mode {mode:o})",
                   f"Other accounts on this machine can {'change' if others_write else 'read'}"
                   f" this {kind}. {risk}",
                   problem.fix or problem.hint or private.private_location_hint(),
                   (str(path),))


def _listable(path: Path, st: os.stat_result) -> Finding | None:
    """Advice, not a refusal: a directory others can list shows what is in it."""
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return None
    # chmod only a directory of the user's own (a root-owned /srv or /opt is not).
    fix = (private.private_location_hint() if private.shared_dir(st)
           else f"chmod {private.DIR_MODE:o} {_q(path)}")
    return Finding("vault-permissions", "warn",
                   f"{path} can be listed by other users (mode {mode:o})",
                   "Other accounts can see which files are in this directory (the vault, "
                   "its backups and nonce state), though not read the vault itself.",
                   fix, (str(path),))


def lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _private_paths(path: Path) -> Iterator[tuple[Path, private.FileRule | private.DirRule]]:
    """(path, the rule the commands apply to it) of everything that belongs to the vault."""
    yield path.parent, private.DirRule.PARENT
    yield path, private.FileRule.PRIVATE
    yield vault_file.lock_path(path), private.FileRule.PRIVATE
    yield nonce_state_path(path), private.FileRule.STATE
    backups = vault_file.backup_dir(path)
    st = lstat_or_none(backups)
    if st is not None:
        yield backups, private.DirRule.PARENT
        if private.dir_problem(backups, st, "", private.DirRule.PARENT) is None:
            for _, file in vault_file.list_backups(path):
                yield file, private.FileRule.PRIVATE
    requests = requests_dir(path)
    st = lstat_or_none(requests)
    if st is not None:
        yield requests, private.DirRule.CLOSED
        if private.dir_problem(requests, st, "", private.DirRule.CLOSED) is None:
            for lock in sorted(requests.iterdir()):
                yield lock, private.FileRule.PRIVATE


def check_permissions(path: Path) -> list[Finding]:
    """The vault, its directory and the files beside it: owned by you, private, no links."""
    if lstat_or_none(path) is None:
        return [Finding("vault-permissions", "fail", f"no vault at {path}",
                        "There is no vault file at this path (or it is the wrong path), so "
                        "the checks that read the vault were skipped.",
                        "botvault init (or pass --vault / set BOTVAULT_PATH to your vault)",
                        (str(path),))]
    findings = []
    for item, rule in _private_paths(path):
        st = lstat_or_none(item)
        if st is not None:
            problem = _mode_problem(item, st, rule)
            if problem is not None:
                findings.append(problem)
    if findings:
        return findings
    return [Finding("vault-permissions", "ok", "the vault's files are private to you",
                    "The vault, its directory, lock, nonce state and backups are owned by you "
                    "and closed to other users.", None)]


# -- KDF -----------------------------------------------------------------------------------


def _read_kdf(path: Path) -> KdfParams | Finding:
    """The KDF parameters from the header (no passphrase needed), or a finding why not."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
        try:
            head = os.pread(fd, fileformat.HEADER_SIZE, 0)
        finally:
            os.close(fd)
        return fileformat.parse_header(head)[0].kdf
    except OSError:
        return Finding("kdf-policy", "warn", "the vault header could not be read",
                       "doctor could not read the vault file to check its key-derivation "
                       "settings (see the permissions finding).", None, (str(path),))
    except VaultError as exc:
        return Finding("vault-file", "fail", "the vault file is damaged or not a vault",
                       f"Reading the header without the passphrase failed: {exc.message}.",
                       exc.hint or "botvault restore --list", (str(path),))


def check_kdf(path: Path, vault: Vault | None) -> list[Finding]:
    """Argon2id parameters against today's policy (256 MiB, 3 passes)."""
    if vault is not None:
        kdf = vault.kdf
    elif lstat_or_none(path) is None:
        return []
    else:
        read = _read_kdf(path)
        if isinstance(read, Finding):
            return [read]
        kdf = read
    from ..kdf_choice import meets_policy, policy_text

    if meets_policy(kdf):
        return [Finding("kdf-policy", "ok", f"key derivation meets today's policy "
                        f"({kdf.describe()})",
                        "Each passphrase guess against a stolen copy costs the attacker "
                        "this much memory and time.", None)]
    below_floor = kdf.memory_kib < FLOOR.memory_kib or kdf.iterations < FLOOR.iterations
    # The policy is the one `init` and `passwd --upgrade-kdf` apply (kdf_choice), so the
    # fix below always removes this finding.
    return [Finding("kdf-policy", "fail" if below_floor else "warn",
                    f"key derivation is weaker than today's policy ({kdf.describe()})",
                    "The passphrase is stretched with Argon2id so that each guess against a "
                    "stolen copy of the vault is slow. This vault uses less than botvault now "
                    f"chooses ({policy_text()}), so guessing is cheaper.",
                    "botvault passwd --upgrade-kdf --keep-passphrase")]


# -- backups -------------------------------------------------------------------------------


def _backup_problem(file: Path) -> str | None:
    """What is wrong with one backup that can be seen without the key, if anything."""
    try:
        fileformat.parse(vault_file.read_private(file))
    except VaultError as exc:
        return exc.message
    except OSError as exc:
        return exc.strerror or "unreadable"
    return None


def _newer_backups(path: Path, listed: list[tuple[int, Path]]) -> list[Finding]:
    """Backups of a generation above the vault file's: every save makes the replaced file
    the backup, so the file went back (an older copy was put in its place)."""
    try:
        current = fileformat.parse_header(vault_file.read_head(path, fileformat.HEADER_SIZE))[0]
    except (VaultError, OSError):
        return []  # the permissions and vault-file findings say why
    newer = [(generation, file) for generation, file in listed
             if generation > current.generation and _same_vault(file, current.vault_id)]
    findings = _seen_above(path, current.generation, current.vault_id)
    if not newer:
        return findings
    return [*findings, Finding(
        "backups", "fail",
        f"backups newer than the vault file (generation {current.generation}): generation "
        f"{', '.join(str(g) for g, _ in newer)}",
        "Each save keeps the file it replaces as a backup, so a backup newer than the vault "
        "means the vault file was put back to an older copy (a restore from a sync tool or "
        "snapshot, or tampering). Changes saved after that copy are only in the backups.",
        f"botvault restore --list, then botvault restore {newer[0][0]} to bring back the "
        f"newest (or botvault restore {current.generation} to keep the file as it is)",
        (str(path), *(str(f) for _, f in newer)))]


def _seen_above(path: Path, generation: int, vault_id: bytes) -> list[Finding]:
    """The record kept outside the vault's directory says a newer generation was here."""
    try:
        highest = seen_generations.seen(path, vault_id)
    except VaultError:
        return []
    if highest <= generation:
        return []
    return [Finding(
        "backups", "fail",
        f"the vault file is generation {generation}, but generation {highest} was already "
        "seen on this machine",
        "An older copy of the vault was put in its place (its directory restored from a "
        "sync tool or snapshot, or tampering). botvault refuses to open it until you choose.",
        f"botvault restore --list, then botvault restore {generation} to keep it on purpose",
        (str(path),))]


def _same_vault(file: Path, vault_id: bytes) -> bool:
    """A backup of this vault (one of another vault is reported as not decrypting)."""
    try:
        head = vault_file.read_head(file, fileformat.HEADER_SIZE)
        return fileformat.parse_header(head)[0].vault_id == vault_id
    except (VaultError, OSError):
        return False


def check_backups(path: Path, vault: Vault | None) -> list[Finding]:
    """Backups are there and each one opens (decrypts, when the vault is open)."""
    if lstat_or_none(path) is None:
        return []
    try:
        listed = vault_file.list_backups(path)
    except VaultError:
        return []  # the backups directory itself is refused: see the permissions finding
    bad = [(file, why) for _, file in listed if (why := _backup_problem(file))]
    findings = [Finding("backups", "fail", f"backup {file.name} is unreadable or damaged",
                        f"It cannot be used to restore the vault: {why}.",
                        f"remove it once you have checked the others: rm {_q(file)}",
                        (str(file),)) for file, why in bad]
    findings += _newer_backups(path, listed)
    if vault is not None and not bad and listed:
        try:
            vault.backups()
        except (VaultError, OSError):
            findings.append(Finding(
                "backups", "fail", "a backup does not decrypt under this vault's key",
                "One of the automatic backups was modified or belongs to another vault; "
                "restoring it would fail.",
                "botvault restore --list (then remove the backup that does not verify)",
                tuple(str(f) for _, f in listed)))
    if findings:
        return findings
    if not listed:
        has_entries = vault is not None and len(vault.list(retired=True)) > 0
        return [Finding("backups", "warn" if has_entries else "ok",
                        "no automatic backups yet",
                        "botvault keeps the last 5 versions beside the vault after each change;"
                        " none exist" + (" although the vault has entries (were they "
                                         "deleted?)." if has_entries else " until the first "
                                         "change."),
                        "make any change (e.g. botvault edit NAME --note ...) to create one"
                        if has_entries else None)]
    verified = "each one decrypts" if vault is not None else \
        "their format is sound (decryption not checked: the vault is not open)"
    return [Finding("backups", "ok", f"{len(listed)} automatic backup(s); {verified}",
                    "These protect against a bad save or a mistaken change, not against "
                    "losing the disk: keep a copy of the vault file somewhere else too.", None)]


# -- synced folders ------------------------------------------------------------------------

# (label, lower-cased folder name). A folder matches when its name is this, or this and then
# a space, "-" or "(": "Dropbox (Personal)", "OneDrive - Acme", "GoogleDrive-me@example.com".
_SYNCED_NAMES: tuple[tuple[str, str], ...] = (
    ("Dropbox", "dropbox"), ("OneDrive", "onedrive"), ("Google Drive", "google drive"),
    ("Google Drive", "googledrive"), ("Google Drive", "my drive"), ("iCloud", "icloud drive"),
    ("iCloud", "iclouddrive"), ("iCloud", "mobile documents"), ("Nextcloud", "nextcloud"),
    ("ownCloud", "owncloud"),
)
_SYNCED_MARKERS = ((".stfolder", "Syncthing"), (".git", "a git work tree"),
                   (".dropbox", "Dropbox"), (".nextcloudsync.log", "Nextcloud"),
                   (".owncloudsync.log", "ownCloud"))


def _synced_by(directory: Path) -> str | None:
    """What syncs or shares `directory`, judged by its path and markers in its parents."""
    for part in directory.parts:
        lowered = part.lower()
        for label, name in _SYNCED_NAMES:
            if lowered == name or (lowered.startswith(name) and lowered[len(name)] in " -("):
                return label
    for parent in (directory, *directory.parents):
        for marker, label in _SYNCED_MARKERS:
            if os.path.lexists(parent / marker):
                return label
    return None


def check_synced_folder(path: Path) -> list[Finding]:
    """The vault inside Dropbox, OneDrive, Google Drive, iCloud, Nextcloud, Syncthing, git."""
    directory = Path(os.path.abspath(path.parent))
    label = _synced_by(directory) or _synced_by(Path(os.path.realpath(directory)))
    if label is None:
        return [Finding("synced-folder", "ok", "the vault is not in a synced or shared folder",
                        "Its nonce counters stay on this machine, as they must.", None)]
    nonces, lock = nonce_state_path(path).name, vault_file.lock_path(path).name
    return [Finding(
        "synced-folder", "warn", f"the vault is inside a folder synced by {label}",
        "The encrypted vault itself is fine there (it is useless without the passphrase), "
        f"but the nonce state ({nonces}) and the lock file ({lock}) beside it must not be "
        "synced: two machines would share nonce counters and hand out the same API nonces, "
        "and the exchange rejects repeats.",
        f"move the vault (and {path.name}.backups) to a private folder outside it and "
        f"use it with --vault NEWPATH or BOTVAULT_PATH=NEWPATH, or exclude {nonces} and "
        f"{lock} from syncing"
        + (f" (for git: add them to {_q(directory / '.gitignore')})"
           if label == "a git work tree" else ""),
        (str(path),))]

"""`botvault doctor`: checks a vault and its surroundings, and says how to fix what it finds.

Each check is a small function that returns `Finding`s; `diagnose` runs them in order.
Checks that need the entries (withdrawal keys, key age, account limit, plaintext copies)
and the decryption of backups run only when an open `Vault` is passed; the others work on
the path alone, so doctor helps even when the vault cannot be opened.

A finding never contains a secret or any part of one: plaintext copies are reported by
file and line, and by the name of the entry whose secret they hold.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pwd
import shlex
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import fileformat, store
from .core import Vault
from .crypto import FLOOR, RECOMMENDED_MEMORY_KIB, KdfParams
from .entries import Entry
from .errors import VaultError
from .nonces import nonce_state_path
from .scopes import Withdrawal

__all__ = [
    "EXIT_FINDINGS",
    "SEVERITIES",
    "Finding",
    "check_account_limit",
    "check_backups",
    "check_kdf",
    "check_key_age",
    "check_permissions",
    "check_plaintext_copies",
    "check_synced_folder",
    "check_withdrawal_keys",
    "diagnose",
    "exit_code",
]

SEVERITIES = ("ok", "warn", "fail")
EXIT_FINDINGS = 10
KEYS_PER_ACCOUNT = 50  # Kraken's limit per account
POLICY_ITERATIONS = 3
SCAN_MAX_BYTES = 5 * 1024 * 1024  # read at most this much of one file
JSON_MAX_BYTES = 1024 * 1024  # a JSON file bigger than this is not a bot config
MIN_SECRET_SEARCHED = 8  # shorter secrets would match by chance everywhere
_MAX_SUBDIRS = 256
_MAX_DIR_ENTRIES = 10_000

_ENV_PATTERNS = (".env", ".env.*", "*.env")
_JSON_PATTERNS = ("*.json",)
_HISTORY_FILES = (".bash_history", ".zsh_history", ".zhistory", ".local/share/fish/fish_history",
                  ".history", ".sh_history", ".python_history")


@dataclass(frozen=True)
class Finding:
    """One result. `fix` is a command or action; `where` are paths ("path:line"), never
    values."""

    check: str
    severity: str
    title: str
    explanation: str
    fix: str | None
    where: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")


def exit_code(findings: Iterable[Finding]) -> int:
    """0 when every finding is ok, `EXIT_FINDINGS` (10) when any warns or fails."""
    return 0 if all(f.severity == "ok" for f in findings) else EXIT_FINDINGS


def diagnose(path: Path, vault: Vault | None, *, home: Path, cwd: Path, now: datetime,
             max_key_age_days: int = 90) -> list[Finding]:
    """Run every check on the vault at `path` (`vault`, when given, is that vault, open)."""
    findings = [*check_permissions(path), *check_kdf(path, vault), *check_backups(path, vault),
                *check_synced_folder(path)]
    if vault is not None:
        entries = vault.list(retired=True)
        live = [e for e in entries if not e.retired]
        findings += [*check_withdrawal_keys(live), *check_key_age(live, now, max_key_age_days),
                     *check_account_limit(live), *check_plaintext_copies(entries, home, cwd)]
    return findings


def _q(path: Path) -> str:
    return shlex.quote(str(path))


# -- permissions ---------------------------------------------------------------------------


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _mode_problem(path: Path, st: os.stat_result, *, want: int, is_dir: bool
                  ) -> Finding | None:
    """A finding for one file or directory that should be private, or None when it is."""
    kind = "directory" if is_dir else "file"
    if stat.S_ISLNK(st.st_mode):
        return Finding("vault-permissions", "fail", f"{path} is a symlink",
                       "botvault never follows symlinks for its own files: whoever can change "
                       "the link could point botvault at a file of their choosing.",
                       "replace the symlink with the real " + kind + ", or point --vault "
                       "(BOTVAULT_PATH) at the real location", (str(path),))
    if st.st_uid != os.getuid() and not (is_dir and st.st_uid == 0):
        return Finding("vault-permissions", "fail", f"{path} is owned by someone else",
                       f"The {kind} belongs to uid {st.st_uid}, not to you. Its owner can "
                       "read or replace it, so botvault refuses to use it.",
                       f"sudo chown {shlex.quote(_user())} {_q(path)}", (str(path),))
    if stat.S_ISDIR(st.st_mode) != is_dir or not (is_dir or stat.S_ISREG(st.st_mode)):
        return Finding("vault-permissions", "fail", f"{path} is not a {kind}",
                       f"botvault expects a {kind} here and will refuse to use this path.",
                       f"move it away (mv {_q(path)} {_q(path)}.old) or point --vault "
                       "(BOTVAULT_PATH) elsewhere", (str(path),))
    mode = stat.S_IMODE(st.st_mode)
    others_write = bool(mode & 0o022) and not (is_dir and mode & stat.S_ISVTX)
    if (mode & 0o077 and not is_dir) or others_write:
        risk = ("They could replace or damage what botvault reads, and botvault refuses to "
                "use it." if others_write else "Whoever copies the vault can try passphrases "
                "offline at their own pace, and botvault refuses to open it.")
        return Finding("vault-permissions", "fail",
                       f"{path} is accessible by other users (mode {mode:o})",
                       f"Other accounts on this machine can {'change' if others_write else 'read'}"
                       f" this {kind}. {risk}", f"chmod {want:o} {_q(path)}", (str(path),))
    if mode & 0o077:
        return Finding("vault-permissions", "warn",
                       f"{path} can be listed by other users (mode {mode:o})",
                       "Other accounts can see which files are in this directory (the vault, "
                       "its backups and nonce state), though not read the vault itself.",
                       f"chmod {want:o} {_q(path)}", (str(path),))
    return None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _private_paths(path: Path) -> Iterator[tuple[Path, int, bool]]:
    """(path, wanted mode, is a directory) of everything that belongs to the vault."""
    yield path.parent, 0o700, True
    yield path, 0o600, False
    for sibling in (store.lock_path(path), nonce_state_path(path)):
        yield sibling, 0o600, False
    backups = store.backup_dir(path)
    if _lstat(backups) is not None:
        yield backups, 0o700, True
        for _, file in store.list_backups(path):
            yield file, 0o600, False


def check_permissions(path: Path) -> list[Finding]:
    """The vault, its directory and the files beside it: owned by you, private, no links."""
    if _lstat(path) is None:
        return [Finding("vault-permissions", "fail", f"no vault at {path}",
                        "There is no vault file at this path (or it is the wrong path), so "
                        "the checks that read the vault were skipped.",
                        "botvault init (or pass --vault / set BOTVAULT_PATH to your vault)",
                        (str(path),))]
    findings = []
    for item, want, is_dir in _private_paths(path):
        st = _lstat(item)
        if st is not None:
            problem = _mode_problem(item, st, want=want, is_dir=is_dir)
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
    elif _lstat(path) is None:
        return []
    else:
        read = _read_kdf(path)
        if isinstance(read, Finding):
            return [read]
        kdf = read
    if kdf.memory_kib >= RECOMMENDED_MEMORY_KIB and kdf.iterations >= POLICY_ITERATIONS:
        return [Finding("kdf-policy", "ok", f"key derivation meets today's policy "
                        f"({kdf.describe()})",
                        "Each passphrase guess against a stolen copy costs the attacker "
                        "this much memory and time.", None)]
    below_floor = kdf.memory_kib < FLOOR.memory_kib or kdf.iterations < FLOOR.iterations
    return [Finding("kdf-policy", "fail" if below_floor else "warn",
                    f"key derivation is weaker than today's policy ({kdf.describe()})",
                    "The passphrase is stretched with Argon2id so that each guess against a "
                    "stolen copy of the vault is slow. This vault uses less memory or fewer "
                    f"passes than botvault now chooses (at least {RECOMMENDED_MEMORY_KIB // 1024}"
                    f" MiB and {POLICY_ITERATIONS} passes), so guessing is cheaper.",
                    "botvault passwd --upgrade-kdf")]


# -- backups -------------------------------------------------------------------------------


def _backup_problem(file: Path) -> str | None:
    """What is wrong with one backup that can be seen without the key, if anything."""
    try:
        fileformat.parse(store.read_private(file))
    except VaultError as exc:
        return exc.message
    except OSError as exc:
        return exc.strerror or "unreadable"
    return None


def check_backups(path: Path, vault: Vault | None) -> list[Finding]:
    """Backups are there and each one opens (decrypts, when the vault is open)."""
    if _lstat(path) is None:
        return []
    listed = store.list_backups(path)
    bad = [(file, why) for _, file in listed if (why := _backup_problem(file))]
    findings = [Finding("backups", "fail", f"backup {file.name} is unreadable or damaged",
                        f"It cannot be used to restore the vault: {why}.",
                        f"remove it once you have checked the others: rm {_q(file)}",
                        (str(file),)) for file, why in bad]
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
    nonces, lock = nonce_state_path(path).name, store.lock_path(path).name
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


# -- entries -------------------------------------------------------------------------------


def _rotate_fix(names: list[str]) -> str:
    return "; ".join(f"botvault rotate {n}" for n in names)


def check_withdrawal_keys(entries: list[Entry]) -> list[Finding]:
    names = [e.name for e in entries if e.withdrawal is Withdrawal.FULL]
    if not names:
        return [Finding("withdrawal-keys", "ok", "no key can withdraw funds",
                        "A leaked trading key can lose money in trades, not move it away.",
                        None)]
    return [Finding(
        "withdrawal-keys", "warn", f"{len(names)} key(s) can withdraw funds",
        "Whoever gets one of these keys can send your funds off the exchange. Trading bots "
        "almost never need that; botvault hands them out only with --allow-withdrawal.",
        "on the exchange, create a key with Withdrawal API set to none and delete the old one,"
        " then: " + "; ".join(f"botvault rotate {n}; botvault edit {n} --withdrawal none"
                              for n in names),
        tuple(names))]


def _created(entry: Entry) -> datetime | None:
    try:
        created = datetime.fromisoformat(entry.created_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return created if created.tzinfo else created.replace(tzinfo=timezone.utc)


def check_key_age(entries: list[Entry], now: datetime, max_days: int) -> list[Finding]:
    aware_now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    old = []
    for entry in entries:
        created = _created(entry)
        if created is not None and (aware_now - created).days > max_days:
            old.append((entry.name, (aware_now - created).days))
    if not old:
        return [Finding("key-age", "ok", f"every key is at most {max_days} days old",
                        "Rotating keys regularly limits how long a leaked key stays useful.",
                        None)]
    return [Finding(
        "key-age", "warn", f"{len(old)} key(s) older than {max_days} days",
        "A key that has been in use for a long time has had more chances to leak (logs, old "
        "configs, backups). Create a new key on the exchange, store it with rotate, and "
        "delete the old one on the exchange.",
        _rotate_fix([n for n, _ in old]),
        tuple(f"{n} ({days} days)" for n, days in old))]


def check_account_limit(entries: list[Entry]) -> list[Finding]:
    counts: dict[str, int] = {}
    for entry in entries:
        if entry.account:
            counts[entry.account] = counts.get(entry.account, 0) + 1
    full = sorted(a for a, n in counts.items() if n >= KEYS_PER_ACCOUNT)
    if not full:
        return [Finding("account-limit", "ok",
                        f"no account label has {KEYS_PER_ACCOUNT} keys or more",
                        "Kraken allows at most 50 API keys per account.", None)]
    return [Finding(
        "account-limit", "warn",
        f"{len(full)} account(s) at Kraken's limit of {KEYS_PER_ACCOUNT} keys",
        "Kraken allows at most 50 API keys per account; creating another will fail until an "
        "old one is deleted on the exchange.",
        "delete unused keys on the exchange, then: botvault rm NAME",
        tuple(f"{a}: {counts[a]} keys" for a in full))]


# -- plaintext copies ----------------------------------------------------------------------


def _shown(path: Path, home: Path) -> str:
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


def _children(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as it:
            # Capped: a huge directory (Downloads) must not make doctor slow.
            return [Path(e.path) for _, e in zip(range(_MAX_DIR_ENTRIES), it, strict=False)]
    except OSError:
        return []


def _is_dir(path: Path) -> bool:
    st = _lstat(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def _matching(directories: Iterable[Path], patterns: tuple[str, ...]) -> Iterator[Path]:
    """Files named like `patterns` in each directory and in its direct subdirectories."""
    for directory in directories:
        subdirs = [c for c in _children(directory) if _is_dir(c)][:_MAX_SUBDIRS]
        for d in (directory, *subdirs):
            for child in _children(d):
                if any(fnmatch.fnmatchcase(child.name, p) for p in patterns):
                    yield child


def _scanned_files(home: Path, cwd: Path) -> list[tuple[Path, bool]]:
    """Every place a pasted secret tends to end up, each with: is it a JSON config?"""
    files = [(f, False) for f in _matching((cwd, home), _ENV_PATTERNS)]
    files += [(home / h, False) for h in _HISTORY_FILES]
    files += [(f, True) for f in _matching((cwd,), _JSON_PATTERNS)]
    seen: set[str] = set()
    unique = []
    for file, is_json in files:
        key = os.path.abspath(file)
        if key not in seen:
            seen.add(key)
            unique.append((file, is_json))
    return unique


def _read_capped(path: Path, *, is_json: bool) -> bytes | None:
    """The start of a regular file (at most 5 MiB; a JSON file bigger than 1 MiB is not a
    bot config and is skipped); None when it is unreadable or not a regular file."""
    try:
        # O_NONBLOCK: a FIFO named like a config must not hang doctor.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if is_json and st.st_size > JSON_MAX_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(SCAN_MAX_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)


def _needles(secret: str) -> set[bytes]:
    """The secret as it would appear in a file: raw, and escaped inside a JSON string."""
    raw = secret.encode("utf-8", "surrogatepass")
    escaped = json.dumps(secret)[1:-1].encode("ascii")
    return {raw, escaped}


def _lines_containing(data: bytes, needles: set[bytes]) -> list[int]:
    lines = set()
    for needle in needles:
        start = data.find(needle)
        while start >= 0:
            lines.add(data.count(b"\n", 0, start) + 1)
            start = data.find(needle, start + 1)
    return sorted(lines)


def check_plaintext_copies(entries: list[Entry], home: Path, cwd: Path) -> list[Finding]:
    """Secrets of stored entries (current and retired) found in .env files, shell history
    and JSON configs; reported as file:line and entry name only."""
    searched = [(e, _needles(e.api_secret.reveal())) for e in entries
                if len(e.api_secret) >= MIN_SECRET_SEARCHED]
    hits: dict[str, list[str]] = {}
    for file, is_json in _scanned_files(home, cwd):
        data = _read_capped(file, is_json=is_json)
        if not data:
            continue
        for entry, needles in searched:
            for line in _lines_containing(data, needles):
                hits.setdefault(entry.name, []).append(f"{_shown(file, home)}:{line}")
    if not hits:
        return [Finding("plaintext-copies", "ok",
                        "no plaintext copy of a stored secret in the usual places",
                        "Searched .env files and JSON configs in this folder and your home "
                        "(one level down) and your shell histories.", None)]
    by_name = {e.name: e for e in entries}
    return [_plaintext_finding(by_name[name], where) for name, where in sorted(hits.items())]


def _plaintext_finding(entry: Entry, where: list[str]) -> Finding:
    if entry.retired:
        return Finding(
            "plaintext-copies", "warn",
            f"the secret of retired key {entry.name} is still in plaintext on disk",
            "This key pair was replaced, but a copy of its secret is still readable in the "
            "files listed. If the old key still exists on the exchange, anyone who reads "
            "those files can use it.",
            "delete the old key on the exchange, then remove those lines "
            "(for shell history: edit the file with the shell closed)",
            tuple(where))
    return Finding(
        "plaintext-copies", "fail",
        f"the secret of {entry.name} is stored in plaintext outside the vault",
        "The vault encrypts this secret, but a plain copy is readable in the files listed: "
        "anything that can read your files (a backup, a synced folder, a compromised "
        "program) can use the key. Treat it as exposed.",
        f"remove those lines (for shell history: edit the file with the shell closed), "
        f"then create a new key on the exchange and: botvault rotate {entry.name}",
        tuple(where))

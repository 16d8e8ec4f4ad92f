"""`botvault doctor`: checks a vault and its surroundings, and says how to fix what it finds.

Each check is a small function that returns `Finding`s; `diagnose` runs them in order.
Checks that need the entries (withdrawal keys, key age, account limit, plaintext copies)
and the decryption of backups run only when an open `Vault` is passed; the others work on
the path alone, so doctor helps even when the vault cannot be opened.

A finding never contains a secret or any part of one: plaintext copies are reported by
file and line, and by the name of the entry whose secret they hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from ..open_vault import Vault
from .entries import check_account_limit, check_key_age, check_withdrawal_keys
from .files import check_backups, check_kdf, check_permissions, check_synced_folder
from .finding import SEVERITIES, Finding
from .gateway_units import check_gateway_port
from .plaintext import JSON_MAX_BYTES as JSON_MAX_BYTES
from .plaintext import MIN_SECRET_SEARCHED as MIN_SECRET_SEARCHED
from .plaintext import SCAN_MAX_BYTES as SCAN_MAX_BYTES
from .plaintext import check_plaintext_copies

__all__ = [
    "EXIT_FINDINGS",
    "SEVERITIES",
    "Finding",
    "check_account_limit",
    "check_backups",
    "check_gateway_port",
    "check_kdf",
    "check_key_age",
    "check_permissions",
    "check_plaintext_copies",
    "check_synced_folder",
    "check_withdrawal_keys",
    "diagnose",
    "exit_code",
]

EXIT_FINDINGS = 10


def exit_code(findings: Iterable[Finding]) -> int:
    """0 when every finding is ok, `EXIT_FINDINGS` (10) when any warns or fails."""
    return 0 if all(f.severity == "ok" for f in findings) else EXIT_FINDINGS


def diagnose(path: Path, vault: Vault | None, *, home: Path, cwd: Path, now: datetime,
             max_key_age_days: int = 90, scan: tuple[Path, ...] = ()) -> list[Finding]:
    """Run every check on the vault at `path` (`vault`, when given, is that vault, open);
    `scan`: more folders to search for plaintext copies (`doctor --scan`)."""
    findings = [*check_permissions(path), *check_kdf(path, vault), *check_backups(path, vault),
                *check_synced_folder(path), *check_gateway_port(home)]
    if vault is not None:
        entries = vault.list(retired=True)
        live = [e for e in entries if not e.retired]
        findings += [*check_withdrawal_keys(live), *check_key_age(live, now, max_key_age_days),
                     *check_account_limit(live),
                     *check_plaintext_copies(entries, home, cwd, scan)]
    return findings

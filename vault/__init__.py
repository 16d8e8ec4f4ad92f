"""botvault: an encrypted local vault for exchange API key pairs.

`from botvault import Vault` is the entry point; `from botvault import agent` reaches a running
agent; `from botvault import Session` opens a vault through the agent when it runs, else with a
passphrase the caller supplies (what every `botvault` command does). Heavy modules (PyNaCl,
argon2) load on first use, so that importing `botvault.errors` for the command line stays fast.
"""

from __future__ import annotations

# One module, one copy: the folder vault/ is the package `botvault` (pyproject's package-dir,
# the editable install, the repository's `botvault` symlink). Imported under its folder's
# name it would load a second copy of every module, whose errors the first copy's `except`
# clauses do not catch.
if __name__ != "botvault":
    raise ImportError(f"import botvault, not {__name__}: the folder vault/ is the package "
                      "botvault (pip install -e . in the repository, or import it through "
                      "the repository's botvault symlink)")

from typing import TYPE_CHECKING, Any

from .errors import (
    AgentError,
    AlreadyExistsError,
    AuthenticationError,
    ClosedError,
    ConflictError,
    FormatError,
    InsecurePermissionsError,
    InvalidInputError,
    LockedError,
    NotFoundError,
    ScopeError,
    VaultError,
    VaultWarning,
)
from .scopes import General, Withdrawal
from .secret import Secret

if TYPE_CHECKING:
    from .crypto import KdfParams
    from .entries import Entry
    from .open_vault import Backup, Vault
    from .session import Session

__all__ = [
    "AgentError",
    "AlreadyExistsError",
    "AuthenticationError",
    "Backup",
    "ClosedError",
    "ConflictError",
    "Entry",
    "FormatError",
    "General",
    "InsecurePermissionsError",
    "InvalidInputError",
    "KdfParams",
    "LockedError",
    "NotFoundError",
    "ScopeError",
    "Secret",
    "Session",
    "Vault",
    "VaultError",
    "VaultWarning",
    "Withdrawal",
]

_LAZY = {
    "Vault": "open_vault", "Backup": "open_vault",
    "KdfParams": "crypto", "Entry": "entries", "Session": "session",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # One place for the version: botvault/version.py, which pyproject.toml reads.
        from .version import __version__

        return __version__
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'botvault' has no attribute {name!r}")

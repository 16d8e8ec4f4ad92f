"""Where a vault and the things beside it live."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_FILENAME", "ENV_PATH", "default_vault_path", "resolve_vault_path"]

ENV_PATH = "BOTVAULT_PATH"
DEFAULT_FILENAME = "vault.bv"


def default_vault_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("botvault", appauthor=False)) / DEFAULT_FILENAME


def resolve_vault_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The explicit path, else $BOTVAULT_PATH, else the platform's user data dir.

    Made absolute (without resolving symlinks: those are refused, not followed) so that the
    lock, backups and nonce state beside it are found from any working directory.
    """
    if path is None or str(path) == "":
        path = os.environ.get(ENV_PATH) or default_vault_path()
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))

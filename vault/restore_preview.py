"""What `restore` of one backup would change, said before it is done."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backups import Backup
    from .open_vault import Vault

__all__ = ["RestorePreview", "restore_preview"]


@dataclass(frozen=True)
class RestorePreview:
    backup: Backup
    brings_back: list[str]  # names the backup holds and the vault does not
    drops: list[str]  # names the vault holds and the backup does not


def restore_preview(backups: list[Backup], vault: Vault, generation: int
                    ) -> RestorePreview | None:
    """The change restoring `generation` (one of `backups`, from `vault.backups()`) makes
    to the open `vault`; None when there is no such backup (`Vault.restore` says why)."""
    chosen = next((b for b in backups if b.generation == generation), None)
    if chosen is None:
        return None
    now = {e.name for e in vault.list(retired=True)}
    return RestorePreview(chosen, sorted(set(chosen.names) - now),
                          sorted(now - set(chosen.names)))

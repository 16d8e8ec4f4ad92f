"""The vault a command works on and where its passphrase comes from: built once, by the root
callback, from --vault and --passphrase-* (or their environment variables), and handed to
every command on `ctx.obj`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import output
from .passphrase import Sources, read_passphrase

if TYPE_CHECKING:
    from botvault.open_vault import Vault
    from botvault.session import Session

__all__ = ["Access", "access"]


@dataclass(frozen=True)
class Access:
    """Which vault, and where its passphrase comes from."""

    vault: Path | None = None
    sources: Sources = field(default_factory=Sources)

    @property
    def path(self) -> Path:
        from botvault.vault_path import resolve_vault_path

        return resolve_vault_path(self.vault)

    def session(self) -> Session:
        """This vault for the library: the passphrase from these sources, asked only when
        the agent cannot serve; with --passphrase-stdin the line is always read and used,
        so what standard input means never depends on the agent."""
        from botvault.session import Session

        sources = self.sources
        return Session(self.path, lambda: read_passphrase(sources), can_ask=sources.can_ask(),
                       agent_first=not sources.stdin, busy=output.status, notice=output.info)

    def open(self) -> Vault:
        """The vault these options name: `botvault.session.Session.open` decides how."""
        return self.session().open()


def access(ctx: Any) -> Access:
    """The access the root callback put on the context (child contexts inherit `obj`)."""
    obj = ctx.obj
    if not isinstance(obj, Access):  # a command run without the `botvault` group: a bug
        raise TypeError("botvault commands run only under the botvault group")
    return obj

"""Options every command shares, and opening the vault they name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from . import output
from .passphrase import Sources, read_passphrase

if TYPE_CHECKING:
    from botvault.agent import AgentClient
    from botvault.core import Vault

__all__ = ["Access", "PassCmdOpt", "PassFileOpt", "VaultOpt", "agent_for_secrets",
           "agent_or_none", "open_vault"]

# Optional[...] rather than `X | None`: Typer reads these annotations at runtime on 3.10.
VaultOpt = Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- see above
    "--vault", envvar="BOTVAULT_PATH", show_default=False, metavar="PATH",
    help="Vault file [default: the user data dir, e.g. ~/.local/share/botvault/vault.bv].")]
PassFileOpt = Annotated[Optional[Path], typer.Option(  # noqa: UP045 -- see above
    "--passphrase-file", envvar="BOTVAULT_PASSPHRASE_FILE", show_default=False, metavar="FILE",
    help="Read the passphrase from FILE (must not be readable by others).")]
PassCmdOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045 -- see above
    "--passphrase-command", envvar="BOTVAULT_PASSPHRASE_COMMAND", show_default=False,
    metavar="CMD", help="Run CMD and read the passphrase from its first output line "
    "(e.g. systemd-ask-password).")]


class Access:
    """Which vault, and where its passphrase comes from."""

    def __init__(self, vault: Path | None, passphrase_file: Path | None,
                 passphrase_command: str | None) -> None:
        self.vault = vault
        self.sources = Sources(passphrase_file, passphrase_command)

    @property
    def path(self) -> Path:
        from botvault.paths import resolve_vault_path

        return resolve_vault_path(self.vault)


def agent_or_none(path: Path) -> AgentClient | None:
    """A connection to the agent serving this vault, or None when it is locked."""
    from botvault.agent import connect
    from botvault.errors import LockedError

    try:
        return connect(path)
    except LockedError:
        return None


def agent_for_secrets(client: AgentClient | None) -> AgentClient | None:
    """`client`, for a caller that needs a secret or the data key; None (so the caller
    asks for the passphrase, and says why) when the agent runs --sign-only."""
    if client is not None and client.status().get("sign_only") is True:
        client.close()
        output.info("the agent is sign-only and hands out no secret; asking for the passphrase")
        return None
    return client


def open_vault(acc: Access, *, use_agent: bool = True) -> Vault:
    """Open the vault: through the running agent when there is one (no passphrase asked),
    else with the passphrase from the usual sources."""
    from botvault.core import Vault
    from botvault.store import read_head

    path = acc.path
    read_head(path, 8)  # a missing or insecure vault is reported before asking anything
    client = agent_for_secrets(agent_or_none(path)) if use_agent else None
    if client is not None:
        with client:
            return Vault.open_with_key(path, client.data_key())
    passphrase = read_passphrase(acc.sources)
    with output.status("unlocking…"):
        return Vault.open(path, passphrase)

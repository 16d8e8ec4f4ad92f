"""Options every command shares, and opening the vault they name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import output
from .passphrase import Sources, read_passphrase

if TYPE_CHECKING:
    from botvault.open_vault import Vault
    from botvault.session import Session

__all__ = ["Access", "GlobalOptions", "PassCmdOpt", "PassFileOpt", "PassStdinOpt", "VaultOpt",
           "global_options", "open_vault", "set_global_options"]

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
    "(e.g. systemd-ask-password); it may take BOTVAULT_PASSPHRASE_TIMEOUT seconds "
    "(default 30).")]
PassStdinOpt = Annotated[bool, typer.Option(
    "--passphrase-stdin", help="Read the passphrase from the first line of standard input "
    "(never together with --secret-stdin). Without it, standard input is not read for the "
    "passphrase.")]


@dataclass(frozen=True)
class GlobalOptions:
    """The shared options given before the command: `botvault --vault X list`."""

    vault: Path | None = None
    passphrase_file: Path | None = None
    passphrase_command: str | None = None
    passphrase_stdin: bool = False


_GLOBAL: list[GlobalOptions] = [GlobalOptions()]


def set_global_options(options: GlobalOptions) -> None:
    _GLOBAL[0] = options


def global_options() -> GlobalOptions:
    return _GLOBAL[0]


_ENV_VARS = {"vault": "BOTVAULT_PATH", "passphrase_file": "BOTVAULT_PASSPHRASE_FILE",
             "passphrase_command": "BOTVAULT_PASSPHRASE_COMMAND"}


def _given(param: str, value: Any, fallback: Any) -> Any:
    """The command's own value, unless it is missing or only what the environment says
    and the same option was given before the command: the command line wins."""
    import os

    if fallback is None:
        return value
    if value is None or str(value) == os.environ.get(_ENV_VARS[param]):
        return fallback
    return value


class Access:
    """Which vault, and where its passphrase comes from."""

    def __init__(self, vault: Path | None, passphrase_file: Path | None,
                 passphrase_command: str | None, passphrase_stdin: bool = False) -> None:
        before = global_options()
        self.vault = _given("vault", vault, before.vault)
        self.sources = Sources(_given("passphrase_file", passphrase_file, before.passphrase_file),
                               _given("passphrase_command", passphrase_command,
                                      before.passphrase_command),
                               passphrase_stdin or before.passphrase_stdin)

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


def open_vault(acc: Access) -> Vault:
    """The vault the options name: `botvault.session.Session.open` decides how."""
    return acc.session().open()

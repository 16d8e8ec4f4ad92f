"""Options every command shares, and opening the vault they name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import output
from .passphrase import Sources, read_passphrase

if TYPE_CHECKING:
    from botvault.agent import AgentClient
    from botvault.core import Vault

__all__ = ["Access", "GlobalOptions", "PassCmdOpt", "PassFileOpt", "PassStdinOpt", "VaultOpt",
           "agent_for_secrets", "agent_or_none", "global_options", "open_vault",
           "set_global_options"]

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
        from botvault.paths import resolve_vault_path

        return resolve_vault_path(self.vault)


def agent_or_none(path: Path, acc: Access | None = None) -> AgentClient | None:
    """A connection to the agent serving this vault, or None when it is locked.

    With `acc` whose passphrase can be asked for, an agent that cannot be used (its
    directory is not private, it is stopped or wedged and does not answer within a short
    timeout) is not an error either: a warning says so and the caller goes on with the
    passphrase, as it would without an agent.
    """
    from botvault.agent import AgentError, connect
    from botvault.agent.client import CALL_TIMEOUT, FALLBACK_TIMEOUT
    from botvault.errors import InsecurePermissionsError, LockedError

    fallback = acc is not None and acc.sources.can_ask()
    try:
        client = connect(path, call_timeout=FALLBACK_TIMEOUT if fallback else CALL_TIMEOUT)
    except LockedError:
        return None
    except InsecurePermissionsError as exc:
        if not fallback:
            raise
        output.warn(f"not using the agent: {exc.message}; using the passphrase instead")
        return None
    if fallback:
        try:
            client.status()  # one round trip: a stopped agent is found here, not mid-command
        except (AgentError, LockedError) as exc:
            client.close()
            output.warn(f"not using the agent: {exc.message}; using the passphrase instead")
            return None
    return client


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
    else with the passphrase from the usual sources. With --passphrase-stdin the line is
    always read and used, so what standard input means never depends on the agent."""
    from botvault.core import Vault
    from botvault.store import read_head

    path = acc.path
    read_head(path, 8)  # a missing or insecure vault is reported before asking anything
    client = (agent_for_secrets(agent_or_none(path, acc))
              if use_agent and not acc.sources.stdin else None)
    if client is not None:
        with client:
            return Vault.open_with_key(path, client.data_key())
    passphrase = read_passphrase(acc.sources)
    with output.status("unlocking…"):
        return Vault.open(path, passphrase)

"""One answer, for every command, to "this vault: through the agent when it runs, else with
the passphrase".

The caller supplies the passphrase as a callable, so the library never prompts and asks only
when the agent cannot serve; what the user should know goes out as `VaultWarning` (an agent
that cannot be used) or through `notice` (why the passphrase is asked for after all).

    from botvault.session import Session

    with Session(path, passphrase=lambda: getpass.getpass()).open() as vault:
        ...

Heavy modules (PyNaCl, argon2) load on first use, as everywhere on the command line's path.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InsecurePermissionsError, LockedError, VaultError, VaultWarning

if TYPE_CHECKING:
    from .agent import AgentClient, AgentInfo
    from .agent.signing import Signed
    from .entries import Entry
    from .open_vault import Vault

__all__ = ["Session", "agent_state", "check_vault_exists", "lock_agent", "running_agent"]

# The file format's magic and version: enough to find a missing or insecure vault.
_HEAD = 8


def check_vault_exists(path: Path) -> None:
    """NotFoundError (no vault at `path`) or InsecurePermissionsError, before anything is
    asked: the same checks every read of the vault makes."""
    from .vault_file import read_head

    read_head(path, _HEAD)


def running_agent(path: Path) -> AgentClient | None:
    """A connection to the agent serving the vault at `path`, or None when it is locked.
    An agent that cannot be used is an error here (for lock, status, unlock)."""
    from .agent import connect

    try:
        return connect(path)
    except LockedError:
        return None


def lock_agent(path: Path) -> bool:
    """Stop the agent serving `path`, wiping its keys: True when one ran, False when none."""
    client = running_agent(path)
    if client is None:
        return False
    with client:
        client.lock()
    return True


def agent_state(path: Path) -> dict[str, Any] | None:
    """The running agent's status and socket, or None when the vault is locked."""
    from .agent import socket_path_for

    check_vault_exists(path)  # before init: "no vault at PATH" (exit 4), not "locked"
    client = running_agent(path)
    if client is None:
        return None
    with client:
        return {**client.status(), "unlocked": True, "socket": str(socket_path_for(path))}


def _quiet(_what: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


def _silent(_message: str) -> None:
    return None


def _unusable(exc: VaultError) -> None:
    warnings.warn(VaultWarning(f"not using the agent: {exc.message}; using the passphrase "
                               "instead"), stacklevel=3)


@dataclass(frozen=True)
class Session:
    """The vault at `path` and how to reach it.

    `passphrase` is called only when the agent cannot serve. `can_ask`: a passphrase can be
    had without the agent, so an agent that cannot be used (insecure directory, stopped,
    wedged) is a warning and the passphrase is used; otherwise it is an error.
    `agent_first=False` (the passphrase comes from standard input) never asks the agent, so
    what standard input means does not depend on it. `busy(what)` wraps the slow steps
    (the KDF); `notice` says why the passphrase is asked for after all.
    """

    path: Path
    passphrase: Callable[[], str]
    can_ask: bool = False
    agent_first: bool = True
    busy: Callable[[str], AbstractContextManager[object]] = _quiet
    notice: Callable[[str], None] = _silent

    def check_exists(self) -> None:
        check_vault_exists(self.path)

    # -- the agent -----------------------------------------------------------------------

    def agent(self) -> AgentClient | None:
        """The agent serving this vault; None when it is locked, when `agent_first` is off,
        or (with `can_ask`, after a VaultWarning) when it cannot be used."""
        if not self.agent_first:
            return None
        from .agent import AgentError, connect
        from .agent.client import CALL_TIMEOUT, FALLBACK_TIMEOUT

        try:
            client = connect(self.path,
                             call_timeout=FALLBACK_TIMEOUT if self.can_ask else CALL_TIMEOUT)
        except LockedError:
            return None
        except InsecurePermissionsError as exc:
            if not self.can_ask:
                raise
            _unusable(exc)
            return None
        if self.can_ask:
            try:
                client.status()  # one round trip: a stopped agent is found here, not mid-way
            except (AgentError, LockedError) as exc:
                client.close()
                _unusable(exc)
                return None
        return client

    def agent_for_secrets(self) -> AgentClient | None:
        """As `agent`, for a caller that needs a secret or the data key: None (and a notice)
        when the agent runs sign-only and hands out neither."""
        client = self.agent()
        if client is not None and client.status().get("sign_only") is True:
            client.close()
            self.notice("the agent is sign-only and hands out no secret; asking for the "
                        "passphrase")
            return None
        return client

    # -- the vault -----------------------------------------------------------------------

    def open(self, *, use_agent: bool = True, allow_rollback: bool = False) -> Vault:
        """The vault: with the agent's data key when it serves (no passphrase asked), else
        with the passphrase. A missing or insecure vault is reported before anything is
        asked. `allow_rollback` (restore): a file older than one seen on this machine opens;
        an agent refuses such a file, so then the passphrase is asked for."""
        from .open_vault import Vault

        self.check_exists()
        client = self.agent_for_secrets() if use_agent else None
        if client is not None:
            with client, contextlib.suppress(*((VaultError,) if allow_rollback else ())):
                return Vault.open_with_key(self.path, client.data_key(),
                                           allow_rollback=allow_rollback)
        return self.open_with_passphrase(allow_rollback=allow_rollback)

    def open_with_passphrase(self, *, allow_rollback: bool = False) -> Vault:
        """The vault, with the passphrase whatever the agent (passwd asks for it always)."""
        from .open_vault import Vault

        passphrase = self.passphrase()
        with self.busy("unlocking…"):
            return Vault.open(self.path, passphrase, allow_rollback=allow_rollback)

    def start_agent(self, *, ttl: float, idle: float, allow_withdrawal: bool,
                    sign_only: bool) -> AgentInfo:
        """Open the vault with the passphrase and start an agent holding its data key."""
        from .agent import start_agent
        from .open_vault import Vault

        passphrase = self.passphrase()
        with self.busy("unlocking…"), Vault.open(self.path, passphrase) as opened:
            return start_agent(self.path, opened.hand_out_data_key(), ttl=ttl, idle=idle,
                               allow_withdrawal=allow_withdrawal, sign_only=sign_only)

    def extend_agent(self, client: AgentClient, ttl: float | None, idle: float | None
                     ) -> dict[str, Any]:
        """Extend the running agent (`AgentClient.extend`). A sign-only agent lives longer
        only for the passphrase: the vault is opened with it, to prove the data key."""
        from .agent.ops import extend_proof

        status = client.status()
        challenge = status.get("extend_challenge")
        if status.get("sign_only") is not True or not isinstance(challenge, str):
            return client.extend(ttl, idle)
        with self.open_with_passphrase() as opened:
            proof = extend_proof(opened.hand_out_data_key(), challenge)
        return client.extend(ttl, idle, proof=proof)

    # -- operations ----------------------------------------------------------------------

    def credentials(self, names: list[str]) -> list[Entry]:
        """Each named key's pair and scopes: from the agent when it serves secrets (no
        passphrase, no KDF), else from the vault."""
        client = self.agent_for_secrets()
        if client is not None:
            with client:
                return [client.credentials(n) for n in names]
        with self.open(use_agent=False) as opened:
            return [opened.get(n) for n in names]

    def sign(self, name: str, path: str, data: str, method: str = "POST") -> Signed:
        """One Kraken request signed with `name`'s key and its next nonce: by the agent when
        it runs (withdrawals only if it allows them), else here, never a withdrawal."""
        from .agent.signing import sign_request

        client = self.agent()
        if client is not None:
            with client:
                return client.sign(name, path, data, method=method)
        with self.open(use_agent=False) as opened:
            return sign_request(lambda: opened, name, path, data, method,
                                allow_withdrawal=False)

    def nonces(self, name: str, count: int) -> list[int]:
        """`count` increasing nonces for `name`'s key, from the agent when it runs."""
        client = self.agent()
        if client is not None:
            with client:
                return client.nonces(name, count)
        with self.open(use_agent=False) as opened:
            return list(opened.allocate_nonces(name, count))

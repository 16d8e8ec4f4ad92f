"""Shared fixtures: every test gets its own vault path and the test-only cheap KDF."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from botvault import Vault
from botvault._testing import cheap_kdf

if TYPE_CHECKING:
    from botvault.agent import AgentClient
    from tests.agent_support import Keys


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test touches the real user data dir or a real agent."""
    monkeypatch.setenv("BOTVAULT_PATH", str(tmp_path / "store" / "vault.bv"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    # The agent's directory when XDG_RUNTIME_DIR is unusable lives in the state dir.
    # The record of generations seen (rollback detection) lives outside the vault dir.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    # In-process integrations pace by Kraken's counters only where a test asks for a tier
    # (tests/test_rate_shared.py): the others send hundreds of calls to a stand-in whose
    # counters are off.
    monkeypatch.setenv("BOTVAULT_KRAKEN_TIER", "off")
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    os.chmod(runtime, 0o700)  # whatever the umask: the agent refuses a dir others may enter
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    for var in ("BOTVAULT_PASSPHRASE_FILE", "BOTVAULT_PASSPHRASE_COMMAND",
                "BOTVAULT_AGENT_SOCKET"):
        monkeypatch.delenv(var, raising=False)
    with cheap_kdf():
        yield


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "vault.bv"


PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty directory of the test's own (tmp_path holds the vault and the XDG dirs)."""
    path = tmp_path / "nonces"
    path.mkdir()
    return path


@pytest.fixture
def keys(vault_path: Path, request: pytest.FixtureRequest) -> Keys:
    """A vault the agent opens, made from the test module's ENTRIES (name -> `add` keyword
    arguments; without ENTRIES one spot key). A module may define its own `keys`."""
    from tests.agent_support import make_vault

    return make_vault(vault_path, getattr(request.module, "ENTRIES", None))


@pytest.fixture
def client(keys: Keys) -> Iterator[AgentClient]:
    """A connection to a real agent serving `keys` (stopped after the test)."""
    from botvault import agent
    from tests.agent_support import running

    with running(keys), agent.connect() as c:
        yield c


@pytest.fixture
def vault(vault_path: Path) -> Iterator[Vault]:
    with cheap_kdf() as kdf, Vault.create(vault_path, PASSPHRASE, kdf=kdf) as v:
        yield v


def kraken_secret(n: int = 64) -> str:
    return base64.b64encode(os.urandom(n)).decode()

"""The library facade `botvault.session`: this vault, through the agent when it runs, else
with the passphrase the caller supplies. Real agents (processes of their own), real files.

The passphrase callable is the seam the command line supplies (the library never prompts):
these tests count its calls to see whether the agent or the passphrase served.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botvault import VaultWarning
from botvault.agent.signing import sign_request
from botvault.errors import (
    AuthenticationError,
    ClosedError,
    InvalidInputError,
    NotFoundError,
    ScopeError,
)
from botvault.exchanges.kraken import sign_spot
from botvault.open_vault import Vault
from botvault.session import Session, agent_state, check_vault_exists, lock_agent
from tests.agent_support import PASSPHRASE, Keys, make_vault, running, spec, stop

ENTRIES = {
    "spot": spec("kraken-spot"),
    "spot-wd": spec("kraken-spot", withdrawal="full"),
    "fut": spec("kraken-futures", "read-only"),
}


class Asked:
    """The caller's passphrase source: counts how often the library asked."""

    def __init__(self, passphrase: str = PASSPHRASE) -> None:
        self.passphrase = passphrase
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.passphrase


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_vault(tmp_path / "agent-vault" / "vault.bv", ENTRIES)


@pytest.fixture
def agent_running(keys: Keys) -> Iterator[Keys]:
    with running(keys):
        yield keys


def _last_nonce(path: Path, name: str) -> int | None:
    with Vault.open(path, PASSPHRASE) as v:
        return v.peek_nonce(name)[0]


# -- opening --------------------------------------------------------------------------------


def test_the_agent_serves_without_asking(agent_running: Keys) -> None:
    asked = Asked()
    with Session(agent_running.path, asked, can_ask=True).open() as v:
        assert sorted(e.name for e in v.list()) == sorted(ENTRIES)
    assert asked.calls == 0


def test_without_an_agent_the_passphrase_is_asked_once(keys: Keys) -> None:
    asked = Asked()
    with Session(keys.path, asked).open() as v:
        assert "spot" in v
    assert asked.calls == 1


def test_agent_first_off_reads_the_passphrase_even_while_the_agent_runs(
        agent_running: Keys) -> None:
    # --passphrase-stdin: the line is read and used whatever the agent; a wrong one fails.
    with pytest.raises(AuthenticationError):
        Session(agent_running.path, Asked("not the passphrase at all"),
                agent_first=False).open()
    asked = Asked()
    assert Session(agent_running.path, asked, agent_first=False).nonces("spot", 1)
    assert asked.calls == 1


def test_a_missing_vault_is_reported_before_anything_is_asked(tmp_path: Path) -> None:
    asked = Asked()
    missing = tmp_path / "nowhere" / "vault.bv"
    with pytest.raises(NotFoundError):
        Session(missing, asked, can_ask=True).open()
    with pytest.raises(NotFoundError):
        check_vault_exists(missing)
    assert asked.calls == 0


def test_a_stopped_agent_is_a_warning_and_the_passphrase_serves(keys: Keys) -> None:
    with running(keys) as info:
        os.kill(info.pid, signal.SIGSTOP)
        try:
            asked = Asked()
            with pytest.warns(VaultWarning, match="not using the agent"):
                values = Session(keys.path, asked, can_ask=True).nonces("spot", 2)
        finally:
            os.kill(info.pid, signal.SIGCONT)
    assert asked.calls == 1
    assert values[0] < values[1]


def test_a_sign_only_agent_hands_out_no_secret_so_the_passphrase_is_asked(keys: Keys) -> None:
    notices: list[str] = []
    with running(keys, sign_only=True):
        asked = Asked()
        creds = Session(keys.path, asked, can_ask=True, notice=notices.append
                        ).credentials(["spot"])
    assert asked.calls == 1
    assert creds[0].api_secret.reveal() == keys.secrets["spot"]
    assert notices == ["the agent is sign-only and hands out no secret; asking for the "
                       "passphrase"]


def test_credentials_come_from_the_agent_while_it_runs(agent_running: Keys) -> None:
    asked = Asked()
    creds = Session(agent_running.path, asked).credentials(["spot", "fut"])
    assert asked.calls == 0
    assert [c.api_secret.reveal() for c in creds] == [agent_running.secrets["spot"],
                                                       agent_running.secrets["fut"]]


def test_busy_wraps_the_key_derivation(keys: Keys) -> None:
    import contextlib

    shown: list[str] = []

    def busy(what: str) -> contextlib.AbstractContextManager[object]:
        shown.append(what)
        return contextlib.nullcontext()

    Session(keys.path, Asked(), busy=busy).open().close()
    assert shown == ["unlocking…"]


# -- signing: one sequence for the agent and the command line -------------------------------


@pytest.mark.parametrize("through_agent", [False, True])
def test_sign_refusal_costs_no_nonce_and_a_signature_verifies(keys: Keys,
                                                              through_agent: bool) -> None:
    def both() -> None:
        session = Session(keys.path, Asked(), can_ask=True)
        before = _last_nonce(keys.path, "spot-wd")
        with pytest.raises(ScopeError):  # a withdrawal: never from here, nor this agent
            session.sign("spot-wd", "/0/private/Withdraw", "asset=XBT&amount=1")
        assert _last_nonce(keys.path, "spot-wd") == before
        signed = session.sign("spot", "/0/private/Balance", "")
        assert signed.body == f"nonce={signed.nonce}"
        assert signed.headers["API-Sign"] == sign_spot(keys.secrets["spot"],
                                                       "/0/private/Balance", signed.nonce,
                                                       signed.body)
        assert _last_nonce(keys.path, "spot") == signed.nonce

    if through_agent:
        with running(keys):
            both()
    else:
        both()


def test_sign_request_holds_the_guard_while_it_allocates(keys: Keys) -> None:
    import threading

    guard = threading.Lock()
    seen: list[bool] = []
    with Vault.open(keys.path, PASSPHRASE) as v:
        def vault_of() -> Vault:
            seen.append(guard.locked())
            return v

        signed = sign_request(vault_of, "fut", "/derivatives/api/v3/openpositions", "",
                              "GET", allow_withdrawal=False, guard=guard)
    assert seen == [True]
    assert not guard.locked()
    assert signed.headers["Nonce"] == str(signed.nonce)


# -- the agent's life -----------------------------------------------------------------------


def test_agent_state_and_lock_agent(keys: Keys) -> None:
    assert agent_state(keys.path) is None
    assert lock_agent(keys.path) is False
    with running(keys) as info:
        state = agent_state(keys.path)
        assert state is not None
        assert state["unlocked"] is True
        assert state["pid"] == info.pid
        assert lock_agent(keys.path) is True
        assert info.process is not None
        assert info.process.wait(10) == 0
    assert agent_state(keys.path) is None


def test_start_agent_asks_once_and_the_agent_then_serves(keys: Keys) -> None:
    asked = Asked()
    info = Session(keys.path, asked).start_agent(ttl=60, idle=60, allow_withdrawal=False,
                                                 sign_only=False)
    try:
        again = Asked()
        assert Session(keys.path, again).nonces("spot", 1)
        assert (asked.calls, again.calls) == (1, 0)
    finally:
        stop(info)


# -- the data key ---------------------------------------------------------------------------


def test_hand_out_data_key_opens_the_vault_and_is_refused_once_closed(keys: Keys) -> None:
    v = Vault.open(keys.path, PASSPHRASE)
    key = v.hand_out_data_key()
    assert key == keys.data_key
    with Vault.open_with_key(keys.path, key) as again:
        assert "spot" in again
    v.close()
    with pytest.raises(ClosedError):
        v.hand_out_data_key()


# -- the command line goes through the facade -----------------------------------------------


def test_cli_sign_and_nonce_through_the_agent_without_a_passphrase(agent_running: Keys
                                                                   ) -> None:
    from botvault.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["sign", "spot", "/0/private/Balance", "--json",
                                 "--vault", str(agent_running.path)])
    assert result.exit_code == 0, result.stderr
    assert '"nonce"' in result.stdout
    result = runner.invoke(app, ["nonce", "spot", "--count", "2",
                                 "--vault", str(agent_running.path)])
    assert result.exit_code == 0, result.stderr
    first, second = map(int, result.stdout.split())
    assert first < second


def test_cli_passphrase_stdin_bypasses_the_running_agent(agent_running: Keys) -> None:
    from botvault.cli.main import app

    result = CliRunner().invoke(app, ["--passphrase-stdin", "sign", "spot",
                                      "/0/private/Balance", "--vault",
                                      str(agent_running.path)],
                                input="not the passphrase at all\n")
    assert result.exit_code == AuthenticationError("x").exit_code, result.stderr
    assert "botvault: error:" in result.stderr


# -- handing keys to bots --------------------------------------------------------------------


def test_key_variables_refuse_a_clash_and_hand_out_nothing(tmp_path: Path) -> None:
    from botvault.key_variables import key_variables

    keys = make_vault(tmp_path / "clash" / "vault.bv", {
        "a": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none",
              "env_key": "KEY", "env_secret": "SECRET_A"},
        "b": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none",
              "env_key": "KEY", "env_secret": "SECRET_B"},
    })
    session = Session(keys.path, Asked())
    with pytest.raises(InvalidInputError, match="KEY"):
        key_variables(session, ["a", "b"], max_scope=None, allow_withdrawal=False,
                      preset=None)
    pairs = key_variables(session, ["a"], max_scope=None, allow_withdrawal=False, preset=None)
    assert pairs == [("KEY", "PUBAKEY"), ("SECRET_A", keys.secrets["a"])]

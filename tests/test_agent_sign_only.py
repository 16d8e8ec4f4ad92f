"""What a process of the user can and cannot do to a `--sign-only` agent (issue 17, must
hold 8; SECURITY.md states each with this file's tests): stop it, yes; extend its life
without the passphrase, read a key or the data key, or have it sign anything but a Kraken
websocket challenge of Kraken's shape or a grant-authenticated request, no."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from botvault import agent
from botvault.agent import start_agent
from botvault.agent.ops import extend_proof
from botvault.errors import InvalidInputError, LockedError, NotFoundError, ScopeError
from botvault.exchanges.kraken import sign_futures, sign_futures_challenge

from .agent_support import (
    PASSPHRASE,
    Keys,
    eventually,
    running,
    runtime_vault,
    spec,
    stop,
)

UUID = "c100b894-1729-464d-ace1-52dbce11db42"


@pytest.fixture
def keys(vault_path: Path) -> Keys:
    return runtime_vault(vault_path, {"fut": spec("kraken-futures"), "spot": spec("kraken-spot")})


@pytest.fixture
def sign_only(keys: Keys) -> Iterator[agent.AgentInfo]:
    info = start_agent(keys.path, keys.data_key, ttl=60, idle=60, allow_withdrawal=False,
                       sign_only=True)
    try:
        yield info
    finally:
        stop(info)


def _botvault(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "botvault", *args], input="",
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_any_process_of_the_user_can_stop_it(keys: Keys, sign_only: agent.AgentInfo) -> None:
    done = _botvault("lock", "--vault", str(keys.path))
    assert done.returncode == 0, done.stderr
    assert eventually(lambda: not Path(f"/proc/{sign_only.pid}").exists() or
                      "zombie" in Path(f"/proc/{sign_only.pid}/status").read_text().lower()
                      if sys.platform.startswith("linux") else True)
    with pytest.raises(LockedError):
        agent.connect(keys.path).status()


def test_its_life_is_not_extended_without_the_passphrase(keys: Keys,
                                                         sign_only: agent.AgentInfo) -> None:
    with agent.connect(keys.path) as client:
        before = float(client.status()["expires_in"])
        for proof in (None, "", "0" * 64, extend_proof(os.urandom(32),
                                                       client.status()["extend_challenge"])):
            with pytest.raises(ScopeError, match="passphrase"):
                client.extend(10**9, 10**9, proof=proof)
        assert float(client.status()["expires_in"]) <= before
    # The command asks for the passphrase; without one it cannot extend.
    done = _botvault("unlock", "--ttl", "30d", "--vault", str(keys.path))
    assert done.returncode != 0 and "passphrase" in done.stderr


def test_with_the_passphrase_it_is_extended_and_a_proof_works_once(
        keys: Keys, sign_only: agent.AgentInfo, tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    done = _botvault("unlock", "--ttl", "2h", "--vault", str(keys.path), "--passphrase-file",
                     str(secret))
    assert done.returncode == 0, done.stderr
    assert "extended" in done.stdout
    with agent.connect(keys.path) as client:
        assert float(client.status()["expires_in"]) > 3600
        challenge = client.status()["extend_challenge"]
        proof = extend_proof(keys.data_key, challenge)
        client.extend(7300, None, proof=proof)
        with pytest.raises(ScopeError):  # the challenge changed: a seen proof is worthless
            client.extend(10**9, None, proof=proof)


def test_it_hands_out_no_key_and_signs_nothing_by_name(keys: Keys,
                                                        sign_only: agent.AgentInfo) -> None:
    with agent.connect(keys.path) as client:
        for call in (client.data_key, lambda: client.credentials("spot"),
                     lambda: client.nonces("spot", 1),
                     lambda: client.sign("spot", "/0/private/Balance", "nonce=1"),
                     lambda: client.sign_challenge("fut", UUID)):
            with pytest.raises(ScopeError, match="sign-only"):
                call()


def test_the_challenge_signer_takes_only_krakens_challenge_shape(keys: Keys) -> None:
    rest = "/api/v3/sendorder"
    data = "orderType=mkt&symbol=PF_XBTUSD&side=buy&size=1000"
    # Exactly what a REST Authent is the signature of (SHA256(postData + nonce + path)).
    as_challenge = data + "1700000000000" + rest
    with running(keys), agent.connect(keys.path) as client:
        assert client.sign_challenge("fut", UUID) == sign_futures_challenge(
            keys.secrets["fut"], UUID)
        for text in (as_challenge, "", UUID + "\n", UUID.replace("-", ""), "x" * 36):
            with pytest.raises(InvalidInputError, match="UUID"):
                client.sign_challenge("fut", text)
        assert sign_futures_challenge(keys.secrets["fut"], as_challenge) == sign_futures(
            keys.secrets["fut"], rest, "1700000000000", data)  # why it matters
        with pytest.raises(NotFoundError):  # a grant is no entry: never a challenge's key
            client.sign_challenge("grant:bot", UUID)

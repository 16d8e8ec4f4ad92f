"""A grant is bound to the key pair it was issued for (issue 17, must hold 1): it follows
that pair through `rotate` (the chain the rotation records) and nothing else; a pair added
later under the same name, a rename onto its name or an import never revives it; `grant
show/list` name its state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from botvault import Vault
from botvault.agent.ops import Agent
from botvault.cli.main import app
from botvault.export import export_entries, read_export
from botvault.grant_ops import add_grant, get_grant, grant_states, revoke_grant
from botvault.nonces import key_id

from .agent_support import (
    PASSPHRASE,
    Keys,
    b64secret,
    runtime_vault,
    spec,
)

ENTRIES = {"spot": spec("kraken-spot"), "other": spec("kraken-spot")}
ORPHANED = "orphaned: its key was removed"


@pytest.fixture
def keys(vault_path: Path) -> Keys:
    return runtime_vault(vault_path, ENTRIES)


@pytest.fixture
def vault(keys: Keys) -> Iterator[Vault]:
    with Vault.open_with_key(keys.path, keys.data_key) as v:
        yield v


@pytest.fixture
def ops(keys: Keys) -> Iterator[Agent]:
    agent = Agent(Vault.open_with_key(keys.path, keys.data_key), ttl=60, idle=60,
                  allow_withdrawal=False)
    yield agent
    agent.close()


def _resolve(ops: Agent, api_key: str) -> dict[str, Any]:
    return ops.handle({"op": "grant_resolve", "grant_key": api_key})


def _state(vault: Vault, bot: str) -> str:
    return grant_states(vault, time.time())[bot]


def test_a_grant_is_not_revived_by_a_new_pair_under_its_entrys_name(ops: Agent,
                                                                   vault: Vault) -> None:
    # The reported case: grant, rotate, remove, add again under the same name.
    grant = add_grant(vault, "g", entry="spot", general="full", withdrawal="none")
    vault.rotate("spot", api_key="PUBSPOTROTATED", api_secret=b64secret())
    assert _resolve(ops, grant.api_key)["key_id"] == key_id("kraken-spot", "PUBSPOTROTATED")
    assert _state(vault, "g") == "active"
    vault.remove("spot")
    assert _resolve(ops, grant.api_key)["error"]["reason"] == "orphaned"
    assert _state(vault, "g") == ORPHANED
    vault.add("spot", exchange="kraken-spot", api_key="PUBBRANDNEWKEY", api_secret=b64secret(),
              general="full", withdrawal="none")
    assert _resolve(ops, grant.api_key)["error"]["reason"] == "orphaned"
    assert _state(vault, "g") == ORPHANED


def test_a_grant_follows_its_pair_through_rotations_and_its_entrys_renames(
        ops: Agent, vault: Vault) -> None:
    grant = add_grant(vault, "g", entry="spot", general="full", withdrawal="none")
    for n in range(3):
        vault.rotate("spot", api_key=f"PUBSPOTROTATED{n}", api_secret=b64secret())
    vault.rename("spot", "spot-main")  # the same pair under a new label
    answer = _resolve(ops, grant.api_key)
    assert (answer["entry"], answer["key_id"]) == (
        "spot-main", key_id("kraken-spot", "PUBSPOTROTATED2"))


def test_a_rename_onto_its_name_does_not_revive_it(ops: Agent, vault: Vault) -> None:
    grant = add_grant(vault, "g", entry="spot", general="full", withdrawal="none")
    vault.remove("spot")
    vault.rename("other", "spot")
    assert _resolve(ops, grant.api_key)["error"]["reason"] == "orphaned"
    assert _state(vault, "g") == ORPHANED


def test_an_import_of_its_own_pair_does_not_revive_it(ops: Agent, keys: Keys, vault: Vault,
                                                      tmp_path: Path) -> None:
    grant = add_grant(vault, "g", entry="spot", general="full", withdrawal="none")
    target = tmp_path / "export.bv"
    export_entries(vault, target, "export passphrase long enough", only=["spot"])
    with Vault.open(target, "export passphrase long enough") as exported:
        # Inside the export (a copy of this vault's pair) the grant still holds.
        assert get_grant(exported, "g").api_key == grant.api_key
        assert grant_states(exported, time.time())["g"] == "active"
    vault.remove("spot")
    vault.import_entries(read_export(target, "export passphrase long enough"))
    assert _resolve(ops, grant.api_key)["error"]["reason"] == "orphaned"
    assert _state(vault, "g") == ORPHANED


def test_show_and_list_name_each_state(keys: Keys, vault: Vault, tmp_path: Path) -> None:
    add_grant(vault, "active-bot", entry="other", general="full", withdrawal="none")
    add_grant(vault, "revoked-bot", entry="other", general="full", withdrawal="none")
    revoke_grant(vault, "revoked-bot")
    add_grant(vault, "expired-bot", entry="other", general="full", withdrawal="none",
              expires_in=10, now=lambda: time.time() - 20)
    add_grant(vault, "orphan-bot", entry="spot", general="full", withdrawal="none")
    vault.remove("spot")
    secret = tmp_path / "pass"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    common = ["--vault", str(keys.path), "--passphrase-file", str(secret)]
    listed = CliRunner().invoke(app, ["grant", "list", "--json", *common])
    assert listed.exit_code == 0, listed.output
    import json

    states = {d["bot"]: d["state"] for d in json.loads(listed.output)}
    assert states == {"active-bot": "active", "revoked-bot": "revoked",
                      "expired-bot": "expired", "orphan-bot": ORPHANED}
    shown = CliRunner().invoke(app, ["grant", "show", "orphan-bot", *common])
    assert shown.exit_code == 0 and ORPHANED in shown.output

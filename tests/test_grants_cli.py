"""`botvault grant add/list/show/revoke/log` and `unlock --sign-only`, through CliRunner and
through the real console script with a real agent."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botvault import Vault, agent
from botvault._testing import CHEAPEST_TEST_ONLY
from botvault.audit import append_audit
from botvault.cli.main import app
from botvault.errors import GrantError
from botvault.grant_ops import get_grant
from tests.agent_support import PASSPHRASE as AGENT_PASSPHRASE
from tests.agent_support import Keys, make_vault
from tests.conftest import PASSPHRASE, kraken_secret
from tests.test_cli_agent import Agents, botvault

runner = CliRunner()


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    # Standard input holds the passphrase only with --passphrase-stdin (one meaning).
    argv = ["--passphrase-stdin", *args] if input is not None else list(args)
    result = runner.invoke(app, argv, input=input)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def made(vault_path: Path) -> Path:
    with Vault.create(vault_path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY) as v:
        v.add("spot", exchange="kraken-spot", api_key="PUBSPOT", api_secret=kraken_secret(),
              general="full", withdrawal="none")
        v.add("ro", exchange="kraken-spot", api_key="PUBRO", api_secret=kraken_secret(),
              general="read-only", withdrawal="none")
    return vault_path


def _add(*extra: str, bot: str = "bot", key: str = "spot") -> tuple[int, str, str]:
    return invoke("grant", "add", bot, "--key", key, *extra, input=f"{PASSPHRASE}\n")


def test_add_prints_the_pair_once_and_nothing_else_shows_the_secret(made: Path) -> None:
    code, out, err = _add("--general", "full", "--withdrawal", "none")
    assert code == 0, err
    found = re.fullmatch(r"api key:    (bvg_[A-Za-z0-9_-]{52})\napi secret: (\S+)\n", out)
    assert found is not None, out
    api_key, secret = found.groups()
    assert "granted bot on spot" in err and secret not in err
    with Vault.open(made, PASSPHRASE) as v:
        stored = get_grant(v, "bot")
        assert stored.api_key == api_key and stored.api_secret.reveal() == secret
    for args in (("grant", "list"), ("grant", "list", "--json"), ("grant", "show", "bot"),
                 ("grant", "show", "bot", "--json"), ("list", "--json")):
        code, out, err = invoke(*args, input=f"{PASSPHRASE}\n")
        assert code == 0, (args, err)
        assert secret not in out and secret not in err
    code, out, _ = invoke("grant", "list", "--json", input=f"{PASSPHRASE}\n")
    (doc,) = json.loads(out)
    assert doc["bot"] == "bot" and doc["api_key"] == api_key and doc["state"] == "active"
    code, out, _ = invoke("list", "--json", input=f"{PASSPHRASE}\n")
    assert [e["name"] for e in json.loads(out)] == ["ro", "spot"]  # a grant is no entry


def test_add_json_is_exactly_the_pair(made: Path) -> None:
    code, out, err = _add("--general", "read-only", "--withdrawal", "none", "--json",
                          "--expires", "1h")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"api_key", "api_secret"}
    code, out, _ = invoke("grant", "show", "bot", "--json", input=f"{PASSPHRASE}\n")
    shown = json.loads(out)
    assert shown["general"] == "read-only" and shown["expires_at"] is not None
    assert doc["api_secret"] not in out


@pytest.mark.parametrize(("args", "code"), [
    (("--general", "full", "--withdrawal", "none"), 6),  # above "ro"'s read-only
    (("--general", "read-only", "--withdrawal", "full"), 6),
    (("--general", "none", "--withdrawal", "none"), 2),
    (("--general", "bogus", "--withdrawal", "none"), 2),
    (("--general", "read-only", "--withdrawal", "none", "--expires", "soon"), 2),
])
def test_add_refusals(made: Path, args: tuple[str, ...], code: int) -> None:
    got, out, err = _add(*args, key="ro")
    assert got == code, err
    assert out == "" and err.startswith("botvault: error: ")
    with Vault.open(made, PASSPHRASE) as v:
        assert v.records("grant:") == []


def test_add_for_a_missing_entry_and_twice(made: Path) -> None:
    assert _add("--general", "full", "--withdrawal", "none", key="nope")[0] == 4
    assert _add("--general", "full", "--withdrawal", "none")[0] == 0
    code, _, err = _add("--general", "full", "--withdrawal", "none")
    assert code == 4 and "revoke it first" in err


def test_revoke_then_show_and_replace(made: Path) -> None:
    assert _add("--general", "full", "--withdrawal", "none")[0] == 0
    code, out, err = invoke("grant", "revoke", "bot", input=f"{PASSPHRASE}\n")
    assert code == 0 and out.startswith("revoked bot"), err
    code, out, _ = invoke("grant", "show", "bot", "--json", input=f"{PASSPHRASE}\n")
    assert json.loads(out)["state"] == "revoked"
    assert invoke("grant", "revoke", "other", input=f"{PASSPHRASE}\n")[0] == 4
    assert invoke("grant", "show", "other", input=f"{PASSPHRASE}\n")[0] == 4
    assert _add("--general", "full", "--withdrawal", "none")[0] == 0


def test_log_reads_the_audit_file_without_a_passphrase(made: Path) -> None:
    append_audit(made, {"time": 1_700_000_000.0, "grant": "bot", "entry": "spot",
                        "endpoint": "/0/private/Balance", "outcome": "ok",
                        "upstream_status": 200})
    append_audit(made, {"time": 1_700_000_001.0, "grant": "other", "entry": "spot",
                        "endpoint": "/0/private/Add\x1b[2JOrder", "outcome": "refused",
                        "upstream_status": None})
    code, out, err = invoke("grant", "log")  # no stdin: no passphrase is asked for
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "GRANT", "ENTRY", "ENDPOINT", "OUTCOME", "STATUS"]
    assert "2023-11-14T22:13:20.000Z" in lines[1] and "200" in lines[1]
    assert "\x1b" not in out and "/0/private/Add?[2JOrder" in lines[2]
    code, out, _ = invoke("grant", "log", "bot", "--json")
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["grant"] == "bot" and record["upstream_status"] == 200
    code, out, _ = invoke("grant", "log", "nobody", "--json")
    assert code == 0 and out == ""


# -- through the real console script and a real agent -------------------------------------


@pytest.fixture
def keys(vault_path: Path) -> Keys:
    return make_vault(vault_path, {
        "spot": {"exchange": "kraken-spot", "general": "full", "withdrawal": "none"},
    })


@pytest.fixture
def agents() -> Iterator[Agents]:
    with Agents() as started:
        yield started


def test_sign_only_agent_then_run_env_show_ask_for_the_passphrase(keys: Keys,
                                                                  agents: Agents) -> None:
    secret = keys.secrets["spot"]
    agents.unlock()
    # An ordinary agent hands the secret to these without a passphrase...
    for args in (("show", "spot", "--reveal"), ("env", "spot")):
        done = botvault(*args)
        assert done.returncode == 0 and secret in done.stdout, done.stderr
    botvault("lock")
    agents.unlock("--sign-only")
    status = json.loads(botvault("status", "--json").stdout)
    assert status["sign_only"] is True
    # ...a sign-only one does not: without a passphrase they fail, with one they work.
    run = ("run", "spot", "--", "sh", "-c", 'printf %s "$KRAKEN_API_SECRET"')
    commands: list[tuple[str, ...]] = [("show", "spot", "--reveal"), ("env", "spot"), run]
    for command in commands:
        refused = botvault(*command)
        assert refused.returncode != 0 and secret not in refused.stdout
        assert "sign-only" in refused.stderr
        done = botvault(*command, input=f"{AGENT_PASSPHRASE}\n")
        assert done.returncode == 0, done.stderr
        assert secret in done.stdout
    assert botvault("sign", "spot", "/0/private/Balance").returncode == 6


def test_grant_added_and_revoked_by_the_cli_in_a_running_agent(keys: Keys,
                                                               agents: Agents) -> None:
    agents.unlock("--sign-only")
    done = botvault("grant", "add", "bot", "--key", "spot", "--general", "read-only",
                    "--withdrawal", "none", "--json", input=f"{AGENT_PASSPHRASE}\n")
    assert done.returncode == 0, done.stderr
    pair = json.loads(done.stdout)
    with agent.connect(keys.path) as client:
        target = client.grant_resolve(pair["api_key"])
        assert (target.grant, target.entry) == ("bot", "spot")
        revoked = botvault("grant", "revoke", "bot", input=f"{AGENT_PASSPHRASE}\n")
        assert revoked.returncode == 0, revoked.stderr
        with pytest.raises(GrantError) as caught:
            client.grant_resolve(pair["api_key"])
        assert caught.value.reason == "revoked"
    listed = botvault("grant", "list", "--json", input=f"{AGENT_PASSPHRASE}\n")
    assert json.loads(listed.stdout)[0]["state"] == "revoked"
    assert pair["api_secret"] not in listed.stdout


def test_expired_grant_in_the_list(made: Path) -> None:
    with Vault.open(made, PASSPHRASE) as v:
        from botvault.grant_ops import add_grant

        add_grant(v, "old", entry="spot", general="full", withdrawal="none", expires_in=60,
                  now=lambda: time.time() - 120)
    code, out, _ = invoke("grant", "list", "--json", input=f"{PASSPHRASE}\n")
    assert code == 0 and json.loads(out)[0]["state"] == "expired"

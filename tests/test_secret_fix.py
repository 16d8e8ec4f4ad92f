"""Issue 16, points 2 and 3: a Kraken secret must decode to the length Kraken issues (refused
with exit 2 before anything is asked otherwise), and a secret stored wrong is replaced in place
with `edit NAME --secret-stdin`, keeping everything else of the entry."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from botvault import Vault
from botvault._testing import CHEAPEST_TEST_ONLY
from botvault.cli.main import app
from botvault.errors import InvalidInputError
from botvault.exchanges.validation import KRAKEN_SECRET_BYTES, clean_secret
from botvault.grant_ops import add_grant, entry_of, get_grant
from botvault.secret_fix import replace_secret
from tests.conftest import PASSPHRASE, kraken_secret

runner = CliRunner()


def _b64(n: int, *, pad: bool = True) -> str:
    text = base64.b64encode(os.urandom(n)).decode()
    return text if pad else text.rstrip("=")


def test_the_lengths_kraken_issues_pass() -> None:
    spot, futures = _b64(64), _b64(66)
    assert len(spot) == len(futures) == 88  # both are Kraken's 88 characters
    assert clean_secret("kraken-spot", spot) == (spot, 0)
    assert clean_secret("kraken-futures", spot) == (spot, 0)
    assert clean_secret("kraken-futures", futures) == (futures, 0)
    assert KRAKEN_SECRET_BYTES == {"kraken-spot": (64,), "kraken-futures": (64, 66)}


@given(st.integers(min_value=1, max_value=200).filter(lambda n: n not in (64, 66)))
def test_every_other_length_is_refused_naming_found_and_expected(n: int) -> None:
    for profile in ("kraken-spot", "kraken-futures"):
        with pytest.raises(InvalidInputError) as caught:
            clean_secret(profile, _b64(n))
        assert f"decodes to {n} bytes" in caught.value.message
        assert "Kraken issues 64-byte secrets" in caught.value.message


def test_spot_refuses_the_futures_unpadded_length() -> None:
    with pytest.raises(InvalidInputError, match="decodes to 66 bytes"):
        clean_secret("kraken-spot", _b64(66))


def test_half_of_a_wrapped_paste_is_refused() -> None:
    """The trap of issue 16: 44 characters (33 bytes) passed "at least 32 bytes"."""
    with pytest.raises(InvalidInputError, match="decodes to 33 bytes"):
        clean_secret("kraken-spot", _b64(64)[:44])


@pytest.fixture
def made(vault_path: Path) -> Path:
    with Vault.create(vault_path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY) as v:
        v.add("spot", exchange="kraken-spot", api_key="PUBSPOT",
              api_secret=kraken_secret(64), general="full", withdrawal="none",
              account="main", note="grid bot", env_key="MY_KEY", env_secret="MY_SECRET")
        add_grant(v, "bot", entry="spot", general="read-only", withdrawal="none")
        for _ in range(3):
            v.next_nonce("spot")
    return vault_path


def _pass_file(tmp_path: Path) -> Path:
    path = tmp_path / "pass"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


def test_add_refuses_a_short_secret_with_exit_2_before_asking_anything(
        vault_path: Path, tmp_path: Path) -> None:
    with Vault.create(vault_path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY):
        pass
    result = runner.invoke(app, ["add", "k", "--exchange", "kraken-spot", "--general", "none",
                                 "--withdrawal", "none", "--api-key", "PUB",
                                 "--passphrase-file", str(_pass_file(tmp_path)),
                                 "--secret-stdin"], input=_b64(64)[:44] + "\n")
    assert result.exit_code == 2
    assert "decodes to 33 bytes" in result.stderr and "64-byte" in result.stderr
    assert result.stdout == ""  # no prompt, no confirmation
    with Vault.open(vault_path, PASSPHRASE) as v:
        assert len(v) == 0


def test_edit_secret_stdin_replaces_the_secret_and_keeps_everything_else(
        made: Path, tmp_path: Path) -> None:
    with Vault.open(made, PASSPHRASE) as v:
        before = v.get("spot")
        nonce_before = v.peek_nonce("spot")[0]
    new = kraken_secret(64)
    result = runner.invoke(app, ["edit", "spot", "--secret-stdin", "--passphrase-file",
                                 str(_pass_file(tmp_path))], input=new + "\n")
    assert result.exit_code == 0, result.stderr
    with Vault.open(made, PASSPHRASE) as v:
        after = v.get("spot")
        assert after.api_secret.reveal() == new
        assert f"secret replaced; fingerprint: {after.fingerprint}" in result.stdout
        assert after.fingerprint != before.fingerprint
        for field in ("name", "api_key", "exchange", "general", "withdrawal", "account",
                      "note", "env_key", "env_secret", "nonce_unit", "created_at"):
            assert getattr(after, field) == getattr(before, field), field
        assert v.peek_nonce("spot")[0] == nonce_before  # the counter is the api key's
        assert v.next_nonce("spot") > (nonce_before or 0)
        assert [e.name for e in v.list(retired=True)] == ["spot"]  # no retired copy
        assert entry_of(v, get_grant(v, "bot")).name == "spot"  # the grant still signs
    assert new not in result.stdout + result.stderr


def test_edit_secret_removes_a_wrap_with_the_warning(made: Path, tmp_path: Path) -> None:
    new = kraken_secret(64)
    result = runner.invoke(app, ["edit", "spot", "--secret-stdin", "--passphrase-file",
                                 str(_pass_file(tmp_path))], input=new[:44] + " " + new[44:])
    assert result.exit_code == 0, result.stderr
    assert "removed 1 whitespace character from the secret" in result.stderr
    with Vault.open(made, PASSPHRASE) as v:
        assert v.get("spot").api_secret.reveal() == new


@pytest.mark.parametrize(("args", "stdin", "says"), [
    (["--secret-stdin"], "c2hvcnQ=", "decodes to 5 bytes"),
    (["--secret", "--secret-stdin"], "x", "exclude each other"),
    (["--secret"], "x", "no terminal to ask for the secret"),
    (["--secret-stdin", "--passphrase-stdin"], "x", "both want standard input"),
])
def test_edit_secret_refusals_change_nothing(made: Path, tmp_path: Path, args: list[str],
                                             stdin: str, says: str) -> None:
    before = made.read_bytes()
    extra = [] if "--passphrase-stdin" in args else ["--passphrase-file",
                                                    str(_pass_file(tmp_path))]
    result = runner.invoke(app, ["edit", "spot", *args, *extra], input=stdin)
    assert result.exit_code == 2
    assert says in result.stderr
    assert made.read_bytes() == before


def test_the_same_secret_again_changes_nothing(made: Path) -> None:
    with Vault.open(made, PASSPHRASE) as v:
        same = v.get("spot").api_secret
        generation = v.generation
        with pytest.raises(InvalidInputError, match="holds this secret already"):
            replace_secret(v, "spot", same)
        assert v.generation == generation

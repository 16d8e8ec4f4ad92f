"""The rules the CLI used to hold itself, now the library's: an entry's fields checked before
anything is asked, where a new vault may be made, what a restore would change, what a bot's
environment leaves out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from botvault.entries import MAX_NOTE
from botvault.entry_checks import check_entry_changes, check_new_entry
from botvault.errors import AlreadyExistsError, InvalidInputError
from botvault.handover.bot_environment import HIDDEN_FROM_BOTS, bot_environment
from botvault.new_vault import check_new_vault_path
from botvault.open_vault import Vault
from botvault.restore_preview import restore_preview
from tests.helpers.vaultfiles import add_generic


def test_a_new_entrys_note_is_held_to_the_stored_limit() -> None:
    check_new_entry("a", exchange="generic", note="n" * MAX_NOTE)
    with pytest.raises(InvalidInputError, match=f"longer than {MAX_NOTE}"):
        check_new_entry("a", exchange="generic", note="n" * (MAX_NOTE + 1))
    with pytest.raises(InvalidInputError, match="invalid entry name"):
        check_new_entry("A b", exchange="generic")
    with pytest.raises(InvalidInputError, match="account label"):
        check_new_entry("a", exchange="generic", account="x" * 5000)
    with pytest.raises(InvalidInputError):
        check_new_entry("a", exchange="kraken-spot", api_key="has spaces in it")


def test_the_same_limits_as_the_vault_applies(vault: Vault) -> None:
    """What the early check lets through, the vault stores; what it refuses, the vault does."""
    add_generic(vault, "a")
    for note in ("n" * MAX_NOTE, "n" * (MAX_NOTE + 1)):
        early = late = None
        try:
            check_entry_changes("a", {"note": note})
        except InvalidInputError as exc:
            early = exc.message
        try:
            vault.edit("a", note=note)
        except InvalidInputError as exc:
            late = exc.message
        assert early == late


def test_changes_are_checked_and_nothing_to_change_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="nothing to change"):
        check_entry_changes("a", {"note": None, "account": None})
    check_entry_changes("a", {"note": None}, replaces_secret=True)
    with pytest.raises(InvalidInputError):
        check_entry_changes("a", {"env_key": "1BAD"})
    check_entry_changes("a", {"env_key": "", "note": ""})  # "" resets or clears: allowed


def test_a_new_vault_is_never_made_over_anything(tmp_path: Path) -> None:
    target = tmp_path / "v.bv"
    assert check_new_vault_path(target) == target
    os.symlink(tmp_path / "nowhere", target)  # a dangling link is something too
    with pytest.raises(AlreadyExistsError, match="it was left as it is"):
        check_new_vault_path(target)


def test_restore_preview_names_what_comes_back_and_what_goes(vault: Vault) -> None:
    add_generic(vault, "kept")
    add_generic(vault, "removed-later")
    before = vault.generation
    vault.remove("removed-later")
    add_generic(vault, "added-later")
    change = restore_preview(vault.backups(), vault, before)
    assert change is not None
    assert (change.brings_back, change.drops) == (["removed-later"], ["added-later"])
    assert restore_preview(vault.backups(), vault, 999) is None


def test_a_bot_never_learns_where_the_passphrase_is() -> None:
    base = {"PATH": "/bin", "BOTVAULT_PASSPHRASE_FILE": "/p", "BOTVAULT_PASSPHRASE_COMMAND": "c",
            "BOTVAULT_PATH": "/v"}
    env = bot_environment(base, [("KEY", "k")])
    assert env == {"PATH": "/bin", "BOTVAULT_PATH": "/v", "KEY": "k"}
    assert set(HIDDEN_FROM_BOTS) <= set(base)

"""Rotation (retired pairs are kept, never used) and encrypted exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from botvault import AlreadyExistsError, AuthenticationError, ScopeError, Vault
from botvault.export import export_entries, read_export
from tests.conftest import PASSPHRASE, kraken_secret


def _add(v: Vault, name: str) -> str:
    secret = kraken_secret()
    v.add(name, exchange="kraken-futures", api_key=f"KEY{name.upper()}", api_secret=secret,
          general="read-only", withdrawal="none", nonce_unit="us")
    v.edit(name, env_key="MY_KEY", env_secret="MY_SECRET")
    return secret


def test_rotate_keeps_labels_and_retires_old_pair(vault: Vault, vault_path: Path) -> None:
    old_secret = _add(vault, "bot")
    new_secret = kraken_secret()
    new, retired_entry = vault.rotate("bot", api_key="NEWKEY", api_secret=new_secret)
    assert retired_entry.name == "bot.retired-1"
    assert (new.general.value, new.withdrawal.value, new.nonce_unit, new.env_key,
            new.env_secret) == ("read-only", "none", "us", "MY_KEY", "MY_SECRET")
    with Vault.open(vault_path, PASSPHRASE) as again:
        assert [e.name for e in again.list()] == ["bot"]
        assert [e.name for e in again.list(retired=True)] == ["bot", "bot.retired-1"]
        retired = again.get("bot.retired-1")
        assert retired.retired
        assert retired.api_secret.reveal() == old_secret
        assert again.get("bot").api_secret.reveal() == new_secret
        with pytest.raises(ScopeError):
            again.next_nonce("bot.retired-1")
        with pytest.raises(ScopeError):
            again.rotate("bot.retired-1", api_key="X", api_secret=kraken_secret())
    vault.rotate("bot", api_key="NEWER", api_secret=kraken_secret())
    assert "bot.retired-2" in vault
    vault.remove("bot.retired-1")
    assert [e.name for e in vault.list(retired=True)] == ["bot", "bot.retired-2"]


def test_rotate_refuses_the_same_pair(vault: Vault) -> None:
    secret = _add(vault, "bot")
    with pytest.raises(ValueError, match="already stored"):
        vault.rotate("bot", api_key="KEYBOT", api_secret=secret)


def test_export_import_round_trip(vault: Vault, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        _add(vault, name)
    out = export_entries(vault, tmp_path / "usb" / "export.bv", "export passphrase 1",
                         only=["a", "c"])
    raw = out.read_bytes()
    assert b"KEYA" not in raw
    assert vault.get("a").api_secret.reveal().encode() not in raw
    assert not Path(f"{out}.lock").exists()
    entries = read_export(out, "export passphrase 1")
    target = Vault.create(tmp_path / "other" / "v.bv", "another passphrase",
                          kdf=vault.kdf)
    target.import_entries(entries)
    for name in ("a", "c"):
        assert target.get(name) == vault.get(name)
        assert target.get(name).api_secret == vault.get(name).api_secret
    assert "b" not in target
    with pytest.raises(AlreadyExistsError):
        target.import_entries(entries)


def test_tampered_export_refused(vault: Vault, tmp_path: Path) -> None:
    _add(vault, "a")
    out = export_entries(vault, tmp_path / "export.bv", "export passphrase 1")
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 1
    out.write_bytes(bytes(data))
    with pytest.raises(AuthenticationError):
        read_export(out, "export passphrase 1")

"""The library: round trips, no plaintext at rest, redaction, the nonce guard, errors."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botvault import (
    AlreadyExistsError,
    AuthenticationError,
    FormatError,
    InvalidInputError,
    NotFoundError,
    Secret,
    Vault,
    VaultError,
    VaultWarning,
)
from botvault import errors as errors_mod
from botvault._testing import sealer_of
from botvault.codec import Keys
from botvault.crypto import (
    CHEAPEST_TEST_ONLY,
    FLOOR,
    KdfParams,
    NonceReuseError,
    Sealer,
    check_params,
)
from botvault.fileformat import HEADER_SIZE, parse
from tests.conftest import PASSPHRASE, kraken_secret

names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True)
# Any str, lone surrogates included: generic secrets are arbitrary text.
any_text = st.text(min_size=1, max_size=200).filter(lambda s: not s.isspace())


def _add(v: Vault, name: str = "kf", **kw: object) -> None:
    # One api key is stored once: each entry gets its own (derived from its name).
    args: dict[str, object] = {"exchange": "kraken-futures", "api_key": f"PUBKEY-{name}",
                               "api_secret": kraken_secret(), "general": "full",
                               "withdrawal": "none"}
    args.update(kw)
    v.add(name, **args)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.dictionaries(names, st.tuples(any_text, any_text, st.text(max_size=300)),
                               min_size=1, max_size=4))
def test_round_trip_after_reopen(tmp_path: Path,
                                 entries: dict[str, tuple[str, str, str]]) -> None:
    path = tmp_path / f"rt-{os.urandom(4).hex()}" / "vault.bv"
    # A secret never holds NUL (refused at add) and one key is stored once: the generated
    # cases are made to fit those rules; tests of their own show each refusal.
    entries = {n: (k, s.replace("\0", "") or "s", t) for n, (k, s, t) in entries.items()}
    used: set[str] = set()
    with Vault.create(path, PASSPHRASE, kdf=CHEAPEST_TEST_ONLY) as v:
        for name, (raw_key, secret, note) in entries.items():
            key = raw_key if raw_key.strip() and not {"\n", "\0"} & set(raw_key) else "k"
            if key.strip() in used:
                key = f"key-of-{name}"
            used.add(key.strip())
            v.add(name, exchange="generic", api_key=key, api_secret=secret, general="read-only",
                  withdrawal="none", note=note)
    with Vault.open(path, PASSPHRASE) as again:
        assert [e.name for e in again.list()] == sorted(entries)
        for name, (_key, secret, note) in entries.items():
            got = again.get(name)
            assert got.api_secret.reveal() == secret
            assert got.note == note


def test_kraken_round_trip_keeps_every_field(vault: Vault, vault_path: Path) -> None:
    secret = kraken_secret()
    vault.add("bot-1", exchange="kraken-spot", api_key="AbC+/=", api_secret=secret,
              general="read-only", withdrawal="full", account="main", note="n", nonce_unit="us")
    with Vault.open(vault_path, PASSPHRASE) as again:
        assert again.get("bot-1") == vault.get("bot-1")
        assert again.get("bot-1").api_secret.reveal() == secret


def test_file_holds_no_plaintext(vault: Vault, vault_path: Path) -> None:
    secret = kraken_secret()
    vault.add("plainname-check", exchange="kraken-futures", api_key="VisibleApiKey42",
              api_secret=secret, general="full", withdrawal="none", account="acct-label-x",
              note="a very recognisable note")
    raw = vault_path.read_bytes()
    for needle in (secret, "VisibleApiKey42", "plainname-check", "acct-label-x",
                   "recognisable", "kraken-futures", "full"):
        assert needle.encode() not in raw
    import base64
    assert base64.b64decode(secret) not in raw


def test_secret_is_redacted_everywhere() -> None:
    value = kraken_secret()
    s = Secret(value)
    for shown in (repr(s), str(s), f"{s}", f"{s!r}", "%s" % s, format(s, ">200")):  # noqa: UP031 -- %-formatting is one of the paths tested
        assert value not in shown
    assert s.reveal() == value
    with pytest.raises(TypeError):
        hash(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert s == Secret(value)
    assert s != Secret(value + "x")


def test_entry_and_vault_reprs_hide_the_secret(vault: Vault) -> None:
    secret = kraken_secret()
    vault.add("a", exchange="kraken-futures", api_key="K", api_secret=secret, general="full",
              withdrawal="none")
    entry = vault.get("a")
    keys = Keys.from_data_key(vault.hand_out_data_key())
    for shown in (repr(entry), str(entry), repr(vault), repr(vault.list()),
                  repr(keys), repr(sealer_of(vault))):
        assert secret not in shown


def test_wrong_passphrase_is_one_opaque_error(vault: Vault, vault_path: Path) -> None:
    before = vault_path.read_bytes()
    with pytest.raises(AuthenticationError) as info:
        Vault.open(vault_path, "not the passphrase")
    assert str(info.value) == "wrong passphrase or the vault was modified"
    assert info.value.exit_code == 3
    assert vault_path.read_bytes() == before


def test_passphrase_str_and_bytes_and_nfc(vault_path: Path) -> None:
    decomposed = "cafe\u0301 passphrase"
    Vault.create(vault_path, decomposed, kdf=CHEAPEST_TEST_ONLY).close()
    Vault.open(vault_path, "caf\u00e9 passphrase").close()
    Vault.open(vault_path, "caf\u00e9 passphrase".encode()).close()
    with pytest.raises(InvalidInputError):
        Vault.open(vault_path, "")


def test_create_refuses_to_overwrite(vault: Vault, vault_path: Path) -> None:
    before = vault_path.read_bytes()
    with pytest.raises(AlreadyExistsError):
        Vault.create(vault_path, "other passphrase", kdf=CHEAPEST_TEST_ONLY)
    assert vault_path.read_bytes() == before


def test_add_duplicate_and_missing(vault: Vault) -> None:
    _add(vault, "a")
    with pytest.raises(AlreadyExistsError):
        _add(vault, "a")
    with pytest.raises(NotFoundError):
        vault.get("zz")
    with pytest.raises(NotFoundError):
        vault.remove("zz")
    with pytest.raises(NotFoundError):
        vault.rename("zz", "yy")


@pytest.mark.parametrize("bad", ["", "A", "-x", ".x", "a b", "a/b", "x" * 65, "é"])
def test_invalid_names_refused(vault: Vault, bad: str) -> None:
    with pytest.raises(InvalidInputError):
        _add(vault, bad)
    assert len(vault) == 0


def test_edit_rename_remove(vault: Vault, vault_path: Path) -> None:
    _add(vault, "a", account="acc")
    with pytest.warns(VaultWarning, match="will be rejected"):
        vault.edit("a", general="read-only", withdrawal="full", note="rotated",
                   nonce_unit="10ns")
    vault.edit("a", account="")
    vault.rename("a", "b")
    with Vault.open(vault_path, PASSPHRASE) as again:
        b = again.get("b")
        assert (b.general.value, b.withdrawal.value, b.note, b.nonce_unit, b.account) == (
            "read-only", "full", "rotated", "10ns", None)
        assert "a" not in again
    vault.remove("b")
    with Vault.open(vault_path, PASSPHRASE) as again:
        assert len(again) == 0


def test_edit_rejects_bad_values(vault: Vault) -> None:
    _add(vault, "a")
    for kwargs in ({"general": "admin"}, {"withdrawal": "some"}, {"nonce_unit": "s"}):
        with pytest.raises(InvalidInputError):
            vault.edit("a", **kwargs)


def test_change_passphrase_reseals_every_record_under_a_fresh_key(vault: Vault,
                                                                 vault_path: Path) -> None:
    from botvault import codec, fileformat

    _add(vault, "a")
    old_copy = vault_path.read_bytes()
    records_before = old_copy[HEADER_SIZE:-32]
    vault.change_passphrase("a brand new passphrase")
    assert vault_path.read_bytes()[HEADER_SIZE:-32] != records_before
    _add(vault, "b")  # added after the change
    # The old copy and its old passphrase give the old data key: it opens nothing later.
    old_key = codec.unwrap(fileformat.parse(old_copy).header,
                           PASSPHRASE.encode())
    with pytest.raises(AuthenticationError):
        Vault.open_with_key(vault_path, old_key)
    with pytest.raises(AuthenticationError):
        Vault.open(vault_path, PASSPHRASE)
    with Vault.open(vault_path, "a brand new passphrase") as again:
        assert again.get("a") == vault.get("a")
        assert again.get("b") == vault.get("b")
        assert again.hand_out_data_key() != old_key


def test_kraken_secret_whitespace_removed_with_count(vault: Vault) -> None:
    secret = kraken_secret()
    pasted = secret[:30] + " " + secret[30:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vault.add("a", exchange="kraken-futures", api_key="K", api_secret=pasted,
                  general="full", withdrawal="none")
    assert vault.get("a").api_secret.reveal() == secret
    messages = [str(w.message) for w in caught if issubclass(w.category, VaultWarning)]
    assert messages == ["removed 1 whitespace character from the secret "
                        "(a line-wrap artefact of copying)"]


def test_account_limit_warns_at_fifty(vault: Vault) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(50):
            _add(vault, f"k{i}", account="main")
    relevant = [str(w.message) for w in caught if "Kraken allows" in str(w.message)]
    assert relevant == ["account 'main' now has 50 keys; Kraken allows at most 50 per account"]


def test_sealer_gives_distinct_nonces_and_guards_reuse() -> None:
    key = os.urandom(32)
    sealer = Sealer(key)
    nonces = {sealer.seal(b"x", b"aad")[0] for _ in range(10_000)}
    assert len(nonces) == 10_000
    stuck = Sealer(key, random=lambda n: b"\x07" * n)
    stuck.seal(b"first", b"")
    with pytest.raises(NonceReuseError):
        stuck.seal(b"second", b"")
    seeded = Sealer(key, seen=[b"\x07" * 24], random=lambda n: b"\x07" * n)
    with pytest.raises(NonceReuseError):
        seeded.seal(b"x", b"")


def test_vault_seals_with_fresh_nonces(vault: Vault) -> None:
    for i in range(20):
        _add(vault, f"k{i}")
    nonces = [r.nonce for r in parse(vault.path.read_bytes()).records]
    assert len(set(nonces)) == 20


def test_vault_refuses_a_repeated_nonce(vault: Vault, vault_path: Path) -> None:
    _add(vault, "a")
    used = parse(vault_path.read_bytes()).records[0].nonce
    sealer_of(vault)._random = lambda _n: used
    before = vault_path.read_bytes()
    with pytest.raises(NonceReuseError):
        _add(vault, "b")
    assert vault_path.read_bytes() == before


@pytest.mark.parametrize("params", [
    KdfParams(FLOOR.memory_kib - 1, 2, 1), KdfParams(FLOOR.memory_kib, 1, 1),
    KdfParams(4 * 1024 * 1024 + 1, 2, 1), KdfParams(FLOOR.memory_kib, 65, 1),
    KdfParams(FLOOR.memory_kib, 2, 0), KdfParams(FLOOR.memory_kib, 2, 17)])
def test_kdf_params_out_of_range(params: KdfParams) -> None:
    with pytest.raises(FormatError):
        check_params(params, error=FormatError)
    with pytest.raises(InvalidInputError):
        check_params(params, error=InvalidInputError)


def test_cheapest_profile_refused_outside_tests(vault: Vault, vault_path: Path) -> None:
    from botvault import crypto
    crypto._test_kdf_allowed = False
    try:
        with pytest.raises(FormatError):
            Vault.open(vault_path, PASSPHRASE)
        with pytest.raises(InvalidInputError):
            Vault.create(vault_path.with_name("other.bv"), PASSPHRASE, kdf=CHEAPEST_TEST_ONLY)
    finally:
        crypto._test_kdf_allowed = True


def test_floor_is_accepted() -> None:
    check_params(FLOOR, error=FormatError)


def test_error_hierarchy() -> None:
    exported = [getattr(errors_mod, n) for n in errors_mod.__all__
                if n not in ("VaultWarning", "EXIT_CODES")]
    assert issubclass(errors_mod.VaultWarning, UserWarning)
    codes = {cls.__name__: cls.exit_code for cls in exported}
    assert codes == {"AgentError": 11, "AlreadyExistsError": 4, "AuthenticationError": 3,
                     "ClosedError": 1, "ConflictError": 9, "FormatError": 8, "GrantError": 3,
                     "InsecurePermissionsError": 7, "InvalidInputError": 2, "LockedError": 5,
                     "NotFoundError": 4, "ScopeError": 6, "PolicyError": 6, "VaultError": 1,
                     "KeyChangedError": 9, "PartialWriteError": 12, "RollbackError": 3,
                     "BusyError": 13}
    assert all(issubclass(cls, VaultError) for cls in exported)
    assert issubclass(InvalidInputError, ValueError)


def test_library_never_raises_the_base_directly() -> None:
    root = Path(__file__).resolve().parents[1]
    for source in [*(root / "vault").rglob("*.py"), *(root / "cli").rglob("*.py")]:
        assert "raise VaultError(" not in source.read_text(), source

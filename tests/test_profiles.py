"""Each fact about the exchange profiles is defined once (vault/exchanges/profiles.py) and
every module uses that one definition."""

from __future__ import annotations

import warnings

from botvault.cli import choices
from botvault.doctor.entries import check_account_limit
from botvault.entries import NONCE_UNITS, NS_PER_UNIT, Entry
from botvault.errors import VaultWarning
from botvault.exchanges import endpoints, profiles, validation
from botvault.handover.names import default_var_names
from botvault.importers.profiles import profile_for
from botvault.integrations import ccxt_agent
from botvault.open_vault import Vault, new_entry
from tests.conftest import kraken_secret


def test_the_profile_lists_are_one_definition() -> None:
    assert validation.EXCHANGES is profiles.PROFILES
    assert endpoints.EXCHANGES is profiles.KRAKEN
    assert endpoints.KRAKEN_SPOT is profiles.KRAKEN_SPOT
    assert ccxt_agent.EXCHANGES is profiles.CCXT_IDS
    assert tuple(e.value for e in choices.Exchange) == profiles.PROFILES
    assert set(profiles.PROFILES) > profiles.KRAKEN


def test_importer_and_handover_share_the_ids_and_variable_names() -> None:
    for ccxt_id, profile in profiles.CCXT_IDS.items():
        assert profile_for(ccxt_id.upper()) == profile
    assert profile_for("binance") == profiles.GENERIC
    for profile in profiles.KRAKEN:
        assert default_var_names(profile, "any") == profiles.VAR_NAMES[profile]


def test_nonce_units_are_the_units_with_a_size() -> None:
    assert NONCE_UNITS == tuple(NS_PER_UNIT) == ("ms", "us", "10ns")


def _entries(count: int) -> list[Entry]:
    return [new_entry(f"k{i}", exchange="kraken-futures", api_key=f"K{i}",
                      api_secret=kraken_secret(), general="full", withdrawal="none",
                      account="main") for i in range(count)]


def test_doctor_and_add_use_one_keys_per_account_limit(vault: Vault) -> None:
    limit = profiles.KRAKEN_KEYS_PER_ACCOUNT
    below, at = check_account_limit(_entries(limit - 1)), check_account_limit(_entries(limit))
    assert [f.severity for f in below] == ["ok"] and [f.severity for f in at] == ["warn"]
    assert f"at most {limit} API keys" in at[0].explanation
    vault.import_entries(_entries(limit - 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vault.add("last", exchange="kraken-futures", api_key="KLAST", api_secret=kraken_secret(),
                  general="full", withdrawal="none", account="main")
    assert [str(w.message) for w in caught if w.category is VaultWarning] == [
        f"account 'main' now has {limit} keys; Kraken allows at most {limit} per account"]

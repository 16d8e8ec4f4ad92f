"""The scope policy for Kraken endpoints: every table row, unknown paths, withdrawals, paths."""

from __future__ import annotations

import dataclasses
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botvault.errors import InvalidInputError, ScopeError
from botvault.exchanges.endpoints import (
    EXCHANGES,
    KRAKEN_FUTURES,
    KRAKEN_SPOT,
    Requirement,
    check,
    known_paths,
    normalise_path,
    requirement,
)
from botvault.scopes import General, Withdrawal

R, F, N = General.READ_ONLY, General.FULL, General.NONE

# Restated here rather than read from the module, so that a change to a row shows up as a diff
# in two places. (general, needs withdrawal, Kraken permission group)
SPOT_EXPECTED: dict[str, tuple[General, bool, str]] = {
    "GetApiKeyInfo": (N, False, "None"),
    "ListWalletAccounts": (N, False, "None"),
    "CreditLines": (R, False, "Query Funds"),
    "Level3": (R, False, "Query Open Orders & Trades"),
    "Balance": (R, False, "Query Funds"),
    "BalanceEx": (R, False, "Query Funds"),
    "TradeBalance": (R, False, "Query Funds"),
    "TradeVolume": (R, False, "Query Funds"),
    "OpenOrders": (R, False, "Query Open Orders & Trades"),
    "OpenPositions": (R, False, "Query Open Orders & Trades"),
    "ClosedOrders": (R, False, "Query Closed Orders & Trades"),
    "QueryOrders": (R, False, "Query Open Orders & Trades or Query Closed Orders & Trades"),
    "OrderAmends": (R, False, "Query Open Orders & Trades or Query Closed Orders & Trades"),
    "TradesHistory": (R, False, "Query Open Orders & Trades or Query Closed Orders & Trades"),
    "QueryTrades": (R, False, "Query Open Orders & Trades or Query Closed Orders & Trades"),
    "Ledgers": (R, False, "Query Ledger Entries"),
    "QueryLedgers": (R, False, "Query Ledger Entries"),
    "AddExport": (F, False, "Export Data"),
    "RemoveExport": (F, False, "Export Data"),
    "ExportStatus": (R, False, "Export Data"),
    "RetrieveExport": (R, False, "Export Data"),
    "AddOrder": (F, False, "Create & Modify Orders"),
    "AddOrderBatch": (F, False, "Create & Modify Orders"),
    "AmendOrder": (F, False, "Create & Modify Orders"),
    "EditOrder": (F, False, "Create & Modify Orders"),
    "CancelOrder": (F, False, "Cancel/Close Orders"),
    "CancelAll": (F, False, "Cancel/Close Orders"),
    "CancelAllOrdersAfter": (F, False, "Cancel/Close Orders"),
    "CancelOrderBatch": (F, False, "Cancel/Close Orders"),
    "GetWebSocketsToken": (F, False, "Access WebSocket API"),
    "DepositMethods": (R, False, "Deposit Funds"),
    "DepositStatus": (R, False, "Deposit Funds"),
    "DepositAddresses": (F, False, "Deposit Funds"),
    "Earn/Allocate": (F, False, "Earn Funds"),
    "Earn/Deallocate": (F, False, "Earn Funds"),
    "Earn/AllocateStatus": (R, False, "Earn Funds"),
    "Earn/DeallocateStatus": (R, False, "Earn Funds"),
    "Earn/Strategies": (R, False, "Earn Funds"),
    "Earn/Allocations": (R, False, "Earn Funds"),
    "Withdraw": (N, True, "Withdraw Funds"),
    "WithdrawCancel": (N, True, "Withdraw Funds"),
    "WithdrawInfo": (N, True, "Withdraw Funds"),
    "WithdrawMethods": (N, True, "Withdraw Funds"),
    "WithdrawAddresses": (N, True, "Withdraw Funds"),
    "WithdrawStatus": (N, True, "Withdraw Funds"),
    "WalletTransfer": (N, True, "Withdraw Funds"),
    "AccountTransfer": (N, True, "Withdraw Funds"),
    "CreateSubaccount": (F, True, "Withdraw Funds"),
}

FUTURES_EXPECTED: dict[str, tuple[General, bool, str]] = {
    **{f"/api/v3/{name}": (R, False, "read-only") for name in (
        "accounts", "openpositions", "openorders", "fills", "recentorders", "orders/status",
        "notifications", "transfers", "unwindqueue", "subaccounts", "feeschedules/volumes",
        "assignmentprogram/current", "assignmentprogram/history", "initialmargin",
        "initialmargin/maxordersize",
    )},
    **{f"/api/v3/{name}": (F, False, "full") for name in (
        "sendorder", "editorder", "cancelorder", "batchorder", "cancelallorders",
        "cancelallordersafter", "transfer", "assignmentprogram/add", "assignmentprogram/delete",
    )},
    "/api/v3/withdrawal": (N, True, "withdrawal"),
    "/api/v3/transfer/subaccount": (F, True, "withdrawal"),
    **dict.fromkeys((
        "/api/history/v2/orders", "/api/history/v2/executions", "/api/history/v2/triggers",
        "/api/history/v2/account-log", "/api/history/v2/accountlogcsv",
        "/api/history/v3/orders", "/api/history/v3/executions", "/api/history/v3/triggers",
        "/api/history/v3/account-log", "/api/history/v3/accountlogcsv",
        "/api/history/v3/positions",
    ), (R, False, "read-only")),
}

# Read on GET, write on anything else (or when the method is not given).
FUTURES_BY_METHOD = {
    "/api/v3/leveragepreferences", "/api/v3/pnlpreferences", "/api/v3/self-trade-strategy",
    "/api/v3/rfq-assignment/max-leverage", "/api/v3/subaccount/{uid}/trading-enabled",
}

UNKNOWN = [
    (KRAKEN_SPOT, "/0/private/balance"),             # case matters
    (KRAKEN_SPOT, "/0/private/withdraw"),
    (KRAKEN_SPOT, "/0/private/Stake"),               # legacy, not in the table
    (KRAKEN_SPOT, "/0/public/Time"),
    (KRAKEN_SPOT, "/derivatives/0/private/Balance"),  # the prefix is Futures only
    (KRAKEN_SPOT, ""),
    (KRAKEN_FUTURES, "/api/v3/WITHDRAWAL"),
    (KRAKEN_FUTURES, "/api/v3/subaccount//trading-enabled"),
    (KRAKEN_FUTURES, "/api/v3/subaccount/a/b/trading-enabled"),
    (KRAKEN_FUTURES, "/api/v3/subaccount/trading-enabled"),
    (KRAKEN_FUTURES, "/api/history/v2/positions"),
    (KRAKEN_FUTURES, "/derivativesapi/v3/accounts"),
    (KRAKEN_FUTURES, "/api/v4/accounts"),
    (KRAKEN_FUTURES, "/api/history/v2/market/PF_XBTUSD/executions"),
    (KRAKEN_FUTURES, "/"),
]


def _check(exchange: str, path: str, general: General, withdrawal: Withdrawal = Withdrawal.NONE,
           *, allow: bool = False) -> Requirement:
    return check(exchange, path, general, withdrawal, allow_withdrawal=allow)


# --- every row ----------------------------------------------------------------------------------

def test_spot_table_is_exactly_the_expected_rows() -> None:
    assert known_paths(KRAKEN_SPOT) == {"/0/private/" + name for name in SPOT_EXPECTED}


def test_futures_table_is_exactly_the_expected_rows() -> None:
    assert known_paths(KRAKEN_FUTURES) == set(FUTURES_EXPECTED) | FUTURES_BY_METHOD


@pytest.mark.parametrize(("name", "expected"), SPOT_EXPECTED.items())
def test_spot_row(name: str, expected: tuple[General, bool, str]) -> None:
    general, withdrawal, group = expected
    assert requirement(KRAKEN_SPOT, "/0/private/" + name) == Requirement(
        general=general, withdrawal=withdrawal, group=group, known=True)


@pytest.mark.parametrize(("path", "expected"), FUTURES_EXPECTED.items())
@pytest.mark.parametrize("method", [None, "GET", "POST"])
def test_futures_row(path: str, expected: tuple[General, bool, str], method: str | None) -> None:
    general, withdrawal, group = expected
    want = Requirement(general=general, withdrawal=withdrawal, group=group, known=True)
    assert requirement(KRAKEN_FUTURES, path, method) == want
    assert requirement(KRAKEN_FUTURES, "/derivatives" + path, method) == want


def test_subaccount_trading_enabled_matches_its_template() -> None:
    uid = "/derivatives/api/v3/subaccount/7bd3e6d5-1c41-4a4b-9e9b-0a6f1e2c3d4e/trading-enabled"
    assert requirement(KRAKEN_FUTURES, uid, "GET").general is R
    assert requirement(KRAKEN_FUTURES, uid, "PUT").general is F
    assert requirement(KRAKEN_FUTURES, uid).general is F


def test_every_row_names_its_kraken_doc() -> None:
    for exchange in (KRAKEN_SPOT, KRAKEN_FUTURES):
        for path in known_paths(exchange):
            for method in ("GET", "POST"):
                assert requirement(exchange, path, method).doc.startswith(
                    "https://docs.kraken.com/"), path


@pytest.mark.parametrize("path", sorted(FUTURES_BY_METHOD))
def test_futures_method_dependent_rows(path: str) -> None:
    def needed(method: str | None) -> General:
        return requirement(KRAKEN_FUTURES, path, method).general

    assert needed("GET") is R
    assert needed("get") is R
    for method in (None, "PUT", "DELETE", "POST", "HEAD", ""):
        assert needed(method) is F, method
    assert requirement(KRAKEN_FUTURES, path, "GET").group == "read-only"
    assert requirement(KRAKEN_FUTURES, path).group == "full"


@pytest.mark.parametrize(("name", "expected"), SPOT_EXPECTED.items())
def test_spot_row_check_agrees(name: str, expected: tuple[General, bool, str]) -> None:
    general, withdrawal, _ = expected
    path = "/0/private/" + name
    # The least key that passes, and each one step short of it.
    key_withdrawal = Withdrawal.FULL if withdrawal else Withdrawal.NONE
    _check(KRAKEN_SPOT, path, general, key_withdrawal, allow=withdrawal)
    if general is not N:
        weaker = R if general is F else N
        with pytest.raises(ScopeError):
            _check(KRAKEN_SPOT, path, weaker, Withdrawal.FULL, allow=True)
    if withdrawal:
        with pytest.raises(ScopeError):
            _check(KRAKEN_SPOT, path, F, Withdrawal.NONE, allow=True)


# --- messages -----------------------------------------------------------------------------------

def test_refusal_names_endpoint_need_and_key() -> None:
    with pytest.raises(ScopeError) as info:
        _check(KRAKEN_SPOT, "/0/private/AddOrder", R)
    message = str(info.value)
    assert "kraken-spot" in message
    assert "/0/private/AddOrder" in message
    assert "Create & Modify Orders" in message
    assert "needs general scope full" in message
    assert "general scope is read-only" in message
    assert "withdraw" not in message
    assert info.value.exit_code == 6


def test_refusal_of_a_none_key_on_a_read_endpoint() -> None:
    with pytest.raises(ScopeError, match=r"needs general scope read-only.*general scope is none"):
        _check(KRAKEN_FUTURES, "/derivatives/api/v3/accounts", N)


def test_refusal_shows_the_normalised_path_and_bounds_its_length() -> None:
    with pytest.raises(ScopeError) as info:
        _check(KRAKEN_FUTURES, "/derivatives/api/v3/sendorder?size=1", R)
    assert "'/api/v3/sendorder'" in str(info.value)
    with pytest.raises(ScopeError) as info:
        _check(KRAKEN_FUTURES, "/x" * 5000, R)
    assert len(str(info.value)) < 500


def test_check_returns_the_requirement() -> None:
    got = _check(KRAKEN_FUTURES, "/derivatives/api/v3/fills", R)
    assert got == requirement(KRAKEN_FUTURES, "/api/v3/fills")


# --- unknown endpoints --------------------------------------------------------------------------

@pytest.mark.parametrize(("exchange", "path"), UNKNOWN)
def test_unknown_endpoints_need_full(exchange: str, path: str) -> None:
    need = requirement(exchange, path)
    assert need == Requirement(general=F, withdrawal=False, group="unknown", known=False)
    _check(exchange, path, F)
    for weaker in (R, N):
        with pytest.raises(ScopeError) as info:
            _check(exchange, path, weaker, Withdrawal.FULL, allow=True)
        assert "not in botvault's table of known endpoints" in str(info.value)
        assert "needs general scope full" in str(info.value)
        assert f"general scope is {weaker.value}" in str(info.value)


@pytest.mark.parametrize(("exchange", "path"), UNKNOWN)
def test_unknown_endpoints_are_not_a_way_around_withdrawal(exchange: str, path: str) -> None:
    # "/0/private/withdraw" may well reach Withdraw: a key that can withdraw gets no unknown
    # endpoint unless withdrawals were allowed.
    with pytest.raises(ScopeError, match="--allow-withdrawal"):
        _check(exchange, path, F, Withdrawal.FULL)
    _check(exchange, path, F, Withdrawal.FULL, allow=True)


# --- withdrawals --------------------------------------------------------------------------------

WITHDRAWALS = [
    (KRAKEN_SPOT, "/0/private/Withdraw"),
    (KRAKEN_SPOT, "/0/private/WithdrawStatus"),
    (KRAKEN_SPOT, "/0/private/WalletTransfer"),
    (KRAKEN_FUTURES, "/derivatives/api/v3/withdrawal"),
    (KRAKEN_FUTURES, "/api/v3/withdrawal"),
]


@pytest.mark.parametrize(("exchange", "path"), WITHDRAWALS)
@pytest.mark.parametrize("general", [N, R, F])
def test_withdrawal_needs_both_key_scope_and_agent_permission(exchange: str, path: str,
                                                              general: General) -> None:
    with pytest.raises(ScopeError) as info:
        _check(exchange, path, general, Withdrawal.NONE, allow=False)
    assert "withdrawal scope is none" in str(info.value)
    assert "not unlocked with --allow-withdrawal" in str(info.value)

    with pytest.raises(ScopeError) as info:
        _check(exchange, path, general, Withdrawal.NONE, allow=True)
    assert "withdrawal scope is none" in str(info.value)
    assert "not unlocked" not in str(info.value)

    with pytest.raises(ScopeError) as info:
        _check(exchange, path, general, Withdrawal.FULL, allow=False)
    assert "not unlocked with --allow-withdrawal" in str(info.value)
    assert "withdrawal scope is" not in str(info.value)

    need = _check(exchange, path, general, Withdrawal.FULL, allow=True)
    assert need.withdrawal


def test_subaccount_transfers_need_full_and_withdrawal() -> None:
    for exchange, path in ((KRAKEN_FUTURES, "/api/v3/transfer/subaccount"),
                           (KRAKEN_SPOT, "/0/private/CreateSubaccount")):
        _check(exchange, path, F, Withdrawal.FULL, allow=True)
        with pytest.raises(ScopeError) as info:
            _check(exchange, path, R, Withdrawal.NONE)
        message = str(info.value)
        assert "general scope is read-only" in message
        assert "withdrawal scope is none" in message
        assert "--allow-withdrawal" in message


@pytest.mark.parametrize("path", ["/0/private/AddOrder", "/0/private/Balance"])
def test_ordinary_endpoints_ignore_the_withdrawal_axis(path: str) -> None:
    for withdrawal in Withdrawal:
        for allow in (False, True):
            _check(KRAKEN_SPOT, path, F, withdrawal, allow=allow)


# --- paths --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("exchange", "raw", "normal"), [
    (KRAKEN_FUTURES, "/derivatives/api/v3/accounts", "/api/v3/accounts"),
    (KRAKEN_FUTURES, "/api/v3/accounts/", "/api/v3/accounts"),
    (KRAKEN_FUTURES, "/api/v3/accounts//", "/api/v3/accounts"),
    (KRAKEN_FUTURES, "/api/v3/fills?lastFillTime=2024-01-01", "/api/v3/fills"),
    (KRAKEN_FUTURES, "/derivatives/api/v3/fills/?a=/b#frag", "/api/v3/fills"),
    (KRAKEN_FUTURES, "/derivativesapi/v3/fills", "/derivativesapi/v3/fills"),
    (KRAKEN_FUTURES, "/API/v3/Fills", "/API/v3/Fills"),
    (KRAKEN_FUTURES, "/", "/"),
    (KRAKEN_SPOT, "/0/private/Balance/", "/0/private/Balance"),
    (KRAKEN_SPOT, "/0/private/Balance?x=1", "/0/private/Balance"),
    (KRAKEN_SPOT, "/derivatives/0/private/Balance", "/derivatives/0/private/Balance"),
])
def test_normalise_path(exchange: str, raw: str, normal: str) -> None:
    assert normalise_path(exchange, raw) == normal


def test_normalised_forms_share_a_requirement() -> None:
    plain = requirement(KRAKEN_FUTURES, "/api/v3/openorders")
    for variant in ("/derivatives/api/v3/openorders", "/api/v3/openorders/",
                    "/derivatives/api/v3/openorders/?x=1"):
        assert requirement(KRAKEN_FUTURES, variant) == plain
    assert requirement(KRAKEN_SPOT, "/0/private/Balance/?a=b").general is R


def test_bad_exchange_and_path() -> None:
    for exchange in ("generic", "kraken", "KRAKEN-SPOT", ""):
        with pytest.raises(InvalidInputError):
            requirement(exchange, "/0/private/Balance")
        with pytest.raises(InvalidInputError):
            known_paths(exchange)
    with pytest.raises(InvalidInputError):
        requirement(KRAKEN_SPOT, None)  # type: ignore[arg-type]
    assert {KRAKEN_SPOT, KRAKEN_FUTURES} == EXCHANGES


def test_requirement_is_frozen() -> None:
    need = requirement(KRAKEN_SPOT, "/0/private/Balance")
    with pytest.raises(dataclasses.FrozenInstanceError):
        need.general = F  # type: ignore[misc]


# --- properties ---------------------------------------------------------------------------------

def _paths() -> st.SearchStrategy[str]:
    known = st.sampled_from(sorted(known_paths(KRAKEN_SPOT) | known_paths(KRAKEN_FUTURES)))
    decorated = st.tuples(st.sampled_from(["", "/derivatives"]), known,
                          st.sampled_from(["", "/", "?a=1", "/?x=/0/private/Balance"]))
    return st.one_of(
        known,
        decorated.map("".join),
        st.text(max_size=40),
        st.text(alphabet=string.ascii_letters + "/?", max_size=40),
    )


methods = st.one_of(st.none(), st.sampled_from(["GET", "get", "POST", "PUT", "DELETE"]))


@given(exchange=st.sampled_from(sorted(EXCHANGES)), path=_paths(), method=methods,
       withdrawal=st.sampled_from(Withdrawal), allow=st.booleans())
def test_read_only_key_never_reaches_a_full_endpoint(exchange: str, path: str,
                                                     method: str | None,
                                                     withdrawal: Withdrawal,
                                                     allow: bool) -> None:
    need = requirement(exchange, path, method)
    try:
        check(exchange, path, R, withdrawal, allow_withdrawal=allow, method=method)
    except ScopeError:
        return
    assert need.general is not F
    assert need.known


@given(exchange=st.sampled_from(sorted(EXCHANGES)), path=_paths(), method=methods,
       general=st.sampled_from(General), withdrawal=st.sampled_from(Withdrawal),
       allow=st.booleans())
def test_check_is_exactly_the_documented_rule(exchange: str, path: str, method: str | None,
                                             general: General, withdrawal: Withdrawal,
                                             allow: bool) -> None:
    need = requirement(exchange, path, method)
    can_withdraw = withdrawal is Withdrawal.FULL and allow
    allowed = general.allows(need.general) and (
        can_withdraw if need.withdrawal
        else need.known or withdrawal is Withdrawal.NONE or allow)
    try:
        check(exchange, path, general, withdrawal, allow_withdrawal=allow, method=method)
    except ScopeError:
        assert not allowed
    else:
        assert allowed

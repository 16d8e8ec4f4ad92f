"""Every botvault error raised inside a client call becomes the client's own type and stays
botvault's: both `except ccxt.X` and `except botvault.errors.Y` catch it, with botvault's
message and hint."""

from __future__ import annotations

import pytest

from botvault import errors
from botvault.agent.protocol import AgentError
from botvault.integrations.client_errors import as_ccxt_error, as_sdk_error
from botvault.request_lock import RequestLockTimeout

ccxt = pytest.importorskip("ccxt")
kraken_exceptions = pytest.importorskip("kraken.exceptions")

EVERY = sorted({c for c in vars(errors).values() if isinstance(c, type)
                and issubclass(c, errors.VaultError) and c is not errors.VaultError}
               | {AgentError, RequestLockTimeout}, key=lambda c: c.__name__)
EXPECTED_CCXT = {
    errors.ScopeError: ccxt.PermissionDenied, errors.LockedError: ccxt.AuthenticationError,
    errors.NotFoundError: ccxt.AuthenticationError, RequestLockTimeout: ccxt.RequestTimeout,
    AgentError: ccxt.ExchangeNotAvailable, errors.InvalidInputError: ccxt.BadRequest,
    errors.ConflictError: ccxt.ExchangeError}


def _make(cls: type[errors.VaultError]) -> errors.VaultError:
    if cls is errors.AuthenticationError:
        return cls()
    if cls is errors.GrantError:
        return errors.GrantError("revoked", "botvault says no", hint="do this instead")
    if cls is errors.PolicyError:
        return errors.PolicyError("pair", "botvault says no", hint="do this instead")
    return cls("botvault says no", hint="do this instead")


@pytest.mark.parametrize("cls", EVERY, ids=lambda c: c.__name__)
def test_ccxt_error_is_both_types_with_botvaults_message(cls: type[errors.VaultError]) -> None:
    original = _make(cls)
    made = as_ccxt_error(original)
    assert isinstance(made, ccxt.BaseError)
    assert isinstance(made, cls)
    assert str(made) == str(original)
    assert getattr(made, "hint", None) == original.hint
    assert vars(made) == vars(original)  # every attribute, e.g. GrantError.reason
    if cls in EXPECTED_CCXT:
        assert isinstance(made, EXPECTED_CCXT[cls])
    assert type(as_ccxt_error(_make(cls))) is type(made)  # one class per pair


@pytest.mark.parametrize("cls", EVERY, ids=lambda c: c.__name__)
def test_sdk_error_keeps_botvaults_message(cls: type[errors.VaultError]) -> None:
    original = _make(cls)
    made = as_sdk_error(original)
    assert isinstance(made, cls)
    assert str(made) == str(original)
    if cls is errors.ScopeError:
        assert isinstance(made, kraken_exceptions.KrakenPermissionDeniedError)
    if cls is errors.LockedError:
        assert isinstance(made, kraken_exceptions.KrakenAuthenticationError)

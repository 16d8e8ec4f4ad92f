"""botvault errors raised inside a client's call, as that client's own exception types.

A bot written against ccxt catches `ccxt.AuthenticationError`, retries `ccxt.NetworkError`,
and so on; an error that botvault raises inside such a call (a refused scope, a locked vault,
a request order that timed out) must take part in that handling. Each error is re-raised as a
class deriving from both the client's type and botvault's original class, so `except
ccxt.PermissionDenied` and `except botvault.errors.ScopeError` both catch it, and its text is
botvault's message (its `hint` is kept on the object).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import cast

from .. import errors
from ..agent.protocol import AgentError
from ..errors import VaultError
from ..request_lock import RequestLockTimeout

__all__ = ["as_ccxt_error", "as_sdk_error"]

# (botvault class, name of ccxt's class, name of the SDK's class or None where it has none
# and the error stays botvault's), most specific first.
_TABLE: Sequence[tuple[type[VaultError], str, str | None]] = (
    (errors.ScopeError, "PermissionDenied", "KrakenPermissionDeniedError"),
    (errors.LockedError, "AuthenticationError", "KrakenAuthenticationError"),
    (errors.NotFoundError, "AuthenticationError", "KrakenAuthenticationError"),
    (errors.AuthenticationError, "AuthenticationError", "KrakenAuthenticationError"),
    (errors.InsecurePermissionsError, "AuthenticationError", "KrakenAuthenticationError"),
    (RequestLockTimeout, "RequestTimeout", None),
    (AgentError, "ExchangeNotAvailable", None),
    (errors.InvalidInputError, "BadRequest", "KrakenInvalidArgumentsError"),
    (VaultError, "ExchangeError", None),
)
_CCXT = [(ours, ccxt) for ours, ccxt, _ in _TABLE]
_SDK = [(ours, sdk) for ours, _, sdk in _TABLE if sdk is not None]


def as_ccxt_error(exc: VaultError) -> Exception:
    import ccxt

    return _translate(exc, _CCXT, vars(ccxt)) or exc


def as_sdk_error(exc: VaultError) -> Exception:
    """The SDK's type where it has one (scope, credentials, arguments); else `exc` itself."""
    import kraken.exceptions

    return _translate(exc, _SDK, vars(kraken.exceptions)) or exc


def _translate(exc: VaultError, table: Sequence[tuple[type[VaultError], str]],
               names: dict[str, object]) -> Exception | None:
    for ours, theirs in table:
        foreign = names.get(theirs)
        if isinstance(exc, ours) and isinstance(foreign, type) \
                and issubclass(foreign, Exception):
            made = _both(foreign, type(exc))
            err = Exception.__new__(made)
            # VaultError's own __init__: the SDK's classes wrap __init__ to prefix a docstring.
            VaultError.__init__(cast(VaultError, err), exc.message, hint=exc.hint)
            err.__dict__.update(exc.__dict__)  # e.g. GrantError.reason, for handlers
            return err
    return None


# One class per pair, so that two errors of one kind are of one class.
_made: dict[tuple[type[Exception], type[VaultError]], type[Exception]] = {}
_made_guard = threading.Lock()


def _both(foreign: type[Exception], ours: type[VaultError]) -> type[Exception]:
    with _made_guard:
        made = _made.get((foreign, ours))
        if made is None:
            made = _made[foreign, ours] = type(foreign.__name__, (foreign, ours), {
                "__module__": __name__, "__str__": VaultError.__str__,
                "__doc__": f"{foreign.__name__} raised by botvault ({ours.__name__})."})
        return made

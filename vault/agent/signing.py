"""What the agent checks and computes to sign a bot's request with a key it never hands out.

The order matters: the entry, the exchange and the endpoint's scope are checked *before* a
nonce is allocated, so a refused request costs nothing; the nonce then goes into the request
and the signature is computed over exactly the bytes the bot will send.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus

from ..entries import Entry
from ..errors import InvalidInputError, ScopeError
from ..exchanges import endpoints
from ..exchanges.kraken import sign_futures, sign_futures_challenge, sign_spot
from ..scopes import General

__all__ = ["Signed", "authorise", "challenge", "sign", "spot_body_with_nonce"]

_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})


@dataclass(frozen=True)
class Signed:
    """A request ready to send: the body (nonce inserted for Spot) and the auth headers."""

    body: str
    headers: dict[str, str]
    nonce: int


def _require_live(entry: Entry) -> None:
    if entry.retired:
        raise ScopeError(f"{entry.name!r} is a retired key pair and is never used again",
                         hint="use the current entry it was rotated into")


def _method(method: str) -> str:
    upper = method.upper()
    if upper not in _METHODS:
        raise InvalidInputError(f"unsupported HTTP method {method[:16]!r}")
    return upper


def authorise(entry: Entry, path: str, method: str, *, allow_withdrawal: bool) -> str:
    """Refuse (ScopeError) what this key may not call; return the normalised method."""
    _require_live(entry)
    if entry.exchange not in endpoints.EXCHANGES:
        raise InvalidInputError(
            f"{entry.name!r} is a {entry.exchange} key; the agent signs Kraken requests only",
            hint="use botvault run or env to hand this key to its bot")
    endpoints.check_product(entry.exchange, path)
    upper = _method(method)
    if entry.exchange == endpoints.KRAKEN_SPOT and upper != "POST":
        raise InvalidInputError("Kraken Spot private requests are POST requests")
    if entry.exchange == endpoints.KRAKEN_SPOT and not path.startswith("/"):
        raise InvalidInputError("a Kraken Spot endpoint path starts with '/'")
    endpoints.check(entry.exchange, path, entry.general, entry.withdrawal,
                    allow_withdrawal=allow_withdrawal, method=upper)
    return upper


def sign(entry: Entry, path: str, data: str, nonce: int) -> Signed:
    """Sign an authorised request (see `authorise`) with the nonce allocated for it."""
    if entry.exchange == endpoints.KRAKEN_SPOT:
        body = spot_body_with_nonce(data, nonce)
        return Signed(body, {"API-Key": entry.api_key,
                             "API-Sign": sign_spot(entry.api_secret, path, nonce, body)}, nonce)
    return Signed(data, {"APIKey": entry.api_key, "Nonce": str(nonce),
                         "Authent": sign_futures(entry.api_secret, path, nonce, data)}, nonce)


def challenge(entry: Entry, text: str) -> str:
    """The signed Futures websocket challenge; any key that may read may subscribe."""
    _require_live(entry)
    if entry.exchange != endpoints.KRAKEN_FUTURES:
        raise InvalidInputError(f"{entry.name!r} is not a kraken-futures key; only Kraken "
                                "Futures websockets sign a challenge")
    if not entry.general.allows(General.READ_ONLY):
        raise ScopeError(f"{entry.name!r} has general scope none; a websocket subscription "
                         "needs read-only", hint="use a key whose scope covers this")
    return sign_futures_challenge(entry.api_secret, text)


def spot_body_with_nonce(body: str, nonce: int) -> str:
    """`body` with `nonce=<nonce>`: in place of the caller's nonce, else first.

    Every other field stays byte for byte as the caller encoded it. A field whose name
    decodes to "nonce" (say `%6Eonce`) is one Kraken's parser would read as the nonce, so it
    is replaced too; a second one is dropped, so no request carries two nonces.
    """
    if body.lstrip().startswith("{"):
        raise InvalidInputError("the agent signs URL-encoded Kraken Spot bodies, not JSON",
                                hint="send the body URL-encoded (a=1&b=2)")
    field = f"nonce={nonce}"
    if not body:
        return field
    out: list[str] = []
    placed = False
    for part in body.split("&"):
        if unquote_plus(part.split("=", 1)[0]) == "nonce":
            if not placed:
                out.append(field)
                placed = True
            continue
        out.append(part)
    if not placed:
        out.insert(0, field)
    return "&".join(out)

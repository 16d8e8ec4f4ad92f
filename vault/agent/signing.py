"""What the agent checks and computes to sign a bot's request with a key it never hands out.

The order matters: the entry, the exchange and the endpoint's scope are checked *before* a
nonce is allocated, so a refused request costs nothing; the nonce then goes into the request
and the signature is computed over exactly the bytes the bot will send.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from ..entries import Entry, check_live
from ..errors import GrantError, InvalidInputError, ScopeError
from ..exchanges import endpoints
from ..exchanges.kraken import sign_futures, sign_futures_challenge, sign_spot, sign_spot_text
from ..grant_record import Grant
from ..scopes import General, Withdrawal
from .protocol import Signed

if TYPE_CHECKING:
    from ..open_vault import Vault

__all__ = ["Signed", "authorise", "bot_nonce", "challenge", "check_grant_signature", "sign",
           "sign_for_grant", "sign_request", "spot_body_with_nonce", "spot_json_with_nonce"]

_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})


def _method(method: str) -> str:
    upper = method.upper()
    if upper not in _METHODS:
        raise InvalidInputError(f"unsupported HTTP method {method[:16]!r}")
    return upper


def authorise(entry: Entry, path: str, method: str, *, allow_withdrawal: bool,
              grant: Grant | None = None) -> str:
    """Refuse (ScopeError) what this key may not call, and with `grant` what is beyond the
    grant's scopes or the entry's own (the one scope check of a signing request); return
    the normalised method."""
    check_live(entry.name, entry.retired)
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
    if grant is not None:
        # A grant without withdrawal is judged as an agent not allowed withdrawals: otherwise
        # an endpoint the tables do not know (a spelling such as `Withdr%61w` that a server
        # routes to Withdraw) would pass for an entry that can withdraw (found in review).
        may_withdraw = allow_withdrawal and grant.withdrawal is Withdrawal.FULL
        endpoints.check(entry.exchange, path, grant.general, grant.withdrawal,
                        allow_withdrawal=may_withdraw, method=upper)
        if may_withdraw != allow_withdrawal:  # else the entry's check above is this one
            endpoints.check(entry.exchange, path, entry.general, entry.withdrawal,
                            allow_withdrawal=may_withdraw, method=upper)
    return upper


def sign(entry: Entry, path: str, data: str, nonce: int) -> Signed:
    """Sign an authorised request (see `authorise`) with the nonce allocated for it."""
    if entry.exchange == endpoints.KRAKEN_SPOT:
        body = spot_body_with_nonce(data, nonce)
        return Signed(body, {"API-Key": entry.api_key,
                             "API-Sign": sign_spot(entry.api_secret, path, nonce, body)}, nonce)
    return Signed(data, {"APIKey": entry.api_key, "Nonce": str(nonce),
                         "Authent": sign_futures(entry.api_secret, path, nonce, data)}, nonce)


def sign_request(vault_of: Callable[[], Vault], name: str, path: str, data: str,
                 method: str = "POST", *, allow_withdrawal: bool,
                 guard: AbstractContextManager[Any] | None = None) -> Signed:
    """The one signing sequence, for the agent's `sign` op and `botvault sign` alike:
    authorise `name`'s entry for the endpoint, allocate its next nonce, sign.

    `vault_of` gives the vault once `guard` is held (the agent passes its lock and its
    reloading accessor). A refused request allocates no nonce. The HMAC runs after `guard`
    is released: it needs only the entry and the nonce."""
    with guard if guard is not None else contextlib.nullcontext():
        vault = vault_of()
        entry = vault.get(name)
        authorise(entry, path, method, allow_withdrawal=allow_withdrawal)
        nonce = vault.next_nonce(name)
    return sign(entry, path, data, nonce)


# Kraken's Futures websocket challenge is a UUID (its docs' example and what the exchange
# sends: "c100b894-1729-464d-ace1-52dbce11db42"). The signature is HMAC(secret,
# SHA256(challenge)), the same as a REST Authent over SHA256(postData + nonce + path): a
# signer that took any text would sign REST requests too.
_CHALLENGE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                        r"[0-9a-fA-F]{12}")


def challenge(entry: Entry, text: str) -> str:
    """The signed Futures websocket challenge; any key that may read may subscribe. Only
    a challenge of Kraken's shape (a UUID) is signed."""
    if not _CHALLENGE.fullmatch(text):
        raise InvalidInputError("a Kraken Futures websocket challenge is a UUID; this is not",
                                hint="pass the challenge exactly as the exchange sent it")
    check_live(entry.name, entry.retired)
    if entry.exchange != endpoints.KRAKEN_FUTURES:
        raise InvalidInputError(f"{entry.name!r} is not a kraken-futures key; only Kraken "
                                "Futures websockets sign a challenge")
    if not entry.general.allows(General.READ_ONLY):
        raise ScopeError(f"{entry.name!r} has general scope none; a websocket subscription "
                         "needs read-only", hint="use a key whose scope covers this")
    return sign_futures_challenge(entry.api_secret, text)


def _field_name(part: str) -> str:
    """The name of one `name=value` form field as a server decodes it (escapes and `+`);
    decoding is skipped where there is nothing to decode (the same text, without the cost:
    a body has a dozen fields and this runs twice per grant-signed request)."""
    name = part.split("=", 1)[0]
    return unquote_plus(name) if "%" in name or "+" in name else name


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
        if _field_name(part) == "nonce":
            if not placed:
                out.append(field)
                placed = True
            continue
        out.append(part)
    if not placed:
        out.insert(0, field)
    return "&".join(out)


# -- grant-authenticated requests (the gateway's) ------------------------------------------

CONTENT_TYPES = frozenset({"form", "json"})
_MAX_JSON_DEPTH = 32


class _Number(str):
    """A JSON number's text exactly as the bot wrote it (re-encoded verbatim)."""


class _Object(list[tuple[str, Any]]):
    """A JSON object's members in order, duplicates kept, so nothing is merged silently."""


def _load_json(body: str) -> _Object:
    try:
        doc = json.loads(body, object_pairs_hook=_Object, parse_float=_Number,
                         parse_int=_Number, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise InvalidInputError("the request body is not valid JSON") from None
    if not isinstance(doc, _Object):
        raise InvalidInputError("a Kraken Spot JSON body is an object")
    _check_depth(doc, 0)
    return doc


def _refuse_constant(name: str) -> None:
    raise ValueError(name)


def _check_depth(value: object, depth: int) -> None:
    if depth > _MAX_JSON_DEPTH:
        raise InvalidInputError("the request body nests too deeply")
    if isinstance(value, _Object):
        for _, member in value:
            _check_depth(member, depth + 1)
    elif isinstance(value, list):
        for member in value:
            _check_depth(member, depth + 1)


def _dump(value: object) -> str:
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, _Object):
        return "{" + ",".join(json.dumps(k) + ":" + _dump(v) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value)


def _nonce_text(value: object) -> str:
    text = value if isinstance(value, str) else None
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise InvalidInputError("the request's nonce is not a whole number")
    return text


def bot_nonce(body: str, content_type: str) -> str:
    """The nonce the bot signed its Spot request with: the body's one `nonce` field, or ""
    when it has none. Two nonce fields are refused: which one the bot meant is unknowable."""
    if content_type == "json":
        found = [v for k, v in _load_json(body) if k == "nonce"]
    else:
        found = [unquote_plus(part.split("=", 1)[1]) if "=" in part else ""
                 for part in body.split("&") if _field_name(part) == "nonce"]
    if len(found) > 1:
        raise InvalidInputError("the request carries more than one nonce")
    return _nonce_text(found[0]) if found else ""


def spot_json_with_nonce(body: str, nonce: int) -> str:
    """The JSON body with `"nonce"` set once, first, as the bot's type (text or number);
    every other member keeps its order and value, numbers their exact text."""
    doc = _load_json(body) if body.strip() else _Object()
    old = [v for k, v in doc if k == "nonce"]
    value: object = str(nonce) if old and not isinstance(old[0], _Number) else _Number(nonce)
    rest = _Object((k, v) for k, v in doc if k != "nonce")
    return _dump(_Object([("nonce", value), *rest]))


def check_grant_signature(grant: Grant, exchange: str, path: str, body: str,
                          signature: str, nonce_header: str, content_type: str) -> None:
    """GrantError("signature") unless the bot signed exactly this request with the grant's
    secret, by the exchange's own formula. Compared in constant time."""
    if exchange == endpoints.KRAKEN_SPOT:
        expected = sign_spot_text(grant.api_secret, path, bot_nonce(body, content_type), body)
    else:
        expected = sign_futures(grant.api_secret, path, nonce_header, body)
    given = signature.encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(expected.encode("ascii"), given):
        raise GrantError("signature", "the request's signature does not verify with the "
                         "grant's secret", hint="sign with the grant's api secret")


def sign_for_grant(entry: Entry, path: str, body: str, nonce: int, content_type: str
                   ) -> Signed:
    """Sign a grant-authenticated request with the real key and the key's own nonce."""
    if entry.exchange == endpoints.KRAKEN_SPOT and content_type == "json":
        new_body = spot_json_with_nonce(body, nonce)
        return Signed(new_body, {"API-Key": entry.api_key,
                                 "API-Sign": sign_spot(entry.api_secret, path, nonce, new_body)},
                      nonce)
    return sign(entry, path, body, nonce)

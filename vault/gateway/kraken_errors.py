"""The gateway's own answers, in the shape that makes each client raise the right class.

Spot answers `{"error": ["EAPI:..."], "result": {}}` (HTTP 200, as Kraken does for API
errors); Futures `{"result": "error", "error": "...", "serverTime": ...}`. One table maps each
reason the gateway answers for to both shapes. Measured with ccxt 4.5.90 (sync and async),
python-kraken-sdk 3.5.1 and krakenex 2.2.2 (tests/test_gateway_outcomes.py):

- Refused before it left (grant, scope, rate, agent, exchange unreachable): a refusal; nothing
  was sent, so retrying is safe.
- Rate: Spot `EAPI:Rate limit exceeded:botvault` (HTTP 200): ccxt's broad match gives
  `RateLimitExceeded` (Kraken's bare string hits its exact map, `DDoSProtection`), the SDK's
  substring match `KrakenApiLimitExceededError`. Futures `apiLimitExceeded` in an HTTP 200
  answer, as Kraken documents it: ccxt `RateLimitExceeded` (an HTTP 429 is `DDoSProtection`
  there, and a bare `Exception` in the SDK), the SDK `KrakenApiLimitExceededError`.
- Sent, answer lost (`OUTCOME_UNKNOWN`): HTTP 504 with a plain-text body that names no Kraken
  error, so no client reads it as one: ccxt raises `RequestTimeout` (its "the order may or
  may not have been placed"), the SDK `Exception("504 - botvault: outcome unknown ...")`,
  krakenex `requests.HTTPError` (504). Never `EService:Unavailable`, which bots retry.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass

__all__ = ["OUTCOME_UNKNOWN_TEXT", "RATE_LIMIT_ERROR", "Api", "Reason", "Refusal", "refusal"]


class Api(str, enum.Enum):
    SPOT = "spot"
    FUTURES = "futures"


class Reason(str, enum.Enum):
    """Why the gateway answered a request itself. The value is what the audit log records."""

    INVALID_KEY = "invalid-key"  # unknown, revoked, expired grant; no credentials
    INVALID_SIGNATURE = "invalid-signature"
    INVALID_NONCE = "invalid-nonce"  # replayed, or its nonce is outside the replay window
    BUSY = "busy"  # over the connection caps
    AUDIT_FAILED = "audit-failed"  # the audit line could not be written: nothing sent
    PERMISSION = "permission-denied"  # endpoint beyond the grant
    POLICY = "policy"  # beyond the grant's trading policy (the audit adds `:rule`)
    RATE_LIMIT = "rate-limit"  # would wait beyond the bound
    TOO_LARGE = "too-large"
    SLOW_CLIENT = "slow-client"
    BAD_REQUEST = "bad-request"
    UNKNOWN_PATH = "unknown-path"
    UNAVAILABLE = "agent-unavailable"  # no agent, or it failed
    UPSTREAM = "upstream-failed"  # exchange unreachable or TLS refused: nothing was sent
    OUTCOME_UNKNOWN = "outcome unknown"  # sent; the answer was lost or timed out
    INTERNAL = "internal-error"  # a fault of the gateway's own (its type goes to stderr)


# Kraken's error with extra information after a colon, as Kraken's own errors carry it.
RATE_LIMIT_ERROR = "EAPI:Rate limit exceeded:botvault"

# reason -> (Spot error, Spot status, Futures error, Futures status)
_TABLE: dict[Reason, tuple[str, int, str, int]] = {
    Reason.INVALID_KEY: ("EAPI:Invalid key", 200, "authenticationError", 200),
    Reason.INVALID_SIGNATURE: ("EAPI:Invalid signature", 200, "authenticationError", 200),
    Reason.INVALID_NONCE: ("EAPI:Invalid nonce", 200, "nonceBelowThreshold", 200),
    Reason.BUSY: ("EService:Busy", 503, "serviceUnavailable", 503),
    Reason.AUDIT_FAILED: ("EService:Unavailable", 503, "serviceUnavailable", 503),
    Reason.PERMISSION: ("EGeneral:Permission denied", 200, "authenticationError", 200),
    Reason.POLICY: ("EGeneral:Permission denied", 200, "authenticationError", 200),
    Reason.RATE_LIMIT: (RATE_LIMIT_ERROR, 200, "apiLimitExceeded", 200),
    Reason.TOO_LARGE: ("EGeneral:Invalid arguments", 413, "requestTooLarge", 413),
    Reason.SLOW_CLIENT: ("EGeneral:Invalid arguments", 408, "requestTimeout", 408),
    Reason.BAD_REQUEST: ("EGeneral:Invalid arguments", 400, "invalidArgument", 400),
    Reason.UNKNOWN_PATH: ("EGeneral:Unknown method", 404, "notFound", 404),
    Reason.UNAVAILABLE: ("EService:Unavailable", 503, "serviceUnavailable", 503),
    Reason.UPSTREAM: ("EService:Unavailable", 502, "serviceUnavailable", 502),
    Reason.INTERNAL: ("EGeneral:Internal error", 500, "serverError", 500),
}

OUTCOME_UNKNOWN_TEXT = (
    "botvault: outcome unknown: the request was sent to Kraken and its answer was lost; "
    "it may have been executed. Query by userref / cl_ord_id (Futures: cliOrdId) before "
    "retrying.\n")


@dataclass(frozen=True)
class Refusal:
    reason: Reason
    status: int
    body: bytes
    content_type: str = "application/json"


def refusal(api: Api, reason: Reason, detail: str = "") -> Refusal:
    """The answer for `reason`. `detail` (a policy refusal's message) follows Kraken's own
    error as a second Spot error (`EGeneral:Permission denied:<detail>`, so clients that
    match the first exactly still raise their permission error) or a Futures `message`."""
    if reason is Reason.OUTCOME_UNKNOWN:
        return Refusal(reason, 504, OUTCOME_UNKNOWN_TEXT.encode(), "text/plain")
    spot_error, spot_status, futures_error, futures_status = _TABLE[reason]
    if api is Api.SPOT:
        errors = [spot_error] + ([f"{spot_error}:{detail}"] if detail else [])
        doc: dict[str, object] = {"error": errors, "result": {}}
        status = spot_status
    else:
        doc = {"result": "error", "error": futures_error,
               "serverTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
        if detail:
            doc["message"] = detail
        status = futures_status
    return Refusal(reason, status, json.dumps(doc).encode())

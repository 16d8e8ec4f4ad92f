"""Refusals in Kraken's own format for each API, so that clients' error handling works.

Spot answers `{"error": ["EAPI:..."], "result": {}}` (HTTP 200, as Kraken does for API
errors); Futures `{"result": "error", "error": "...", "serverTime": ...}`. One table maps each
reason the gateway refuses for to both shapes.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass

__all__ = ["Api", "Reason", "Refusal", "refusal"]


class Api(str, enum.Enum):
    SPOT = "spot"
    FUTURES = "futures"


class Reason(str, enum.Enum):
    """Why the gateway answered a request itself. The value is what the audit log records."""

    INVALID_KEY = "invalid-key"  # unknown, revoked, expired grant; no credentials
    INVALID_SIGNATURE = "invalid-signature"
    PERMISSION = "permission-denied"  # endpoint beyond the grant
    POLICY = "policy"  # beyond the grant's trading policy (the audit adds `:rule`)
    RATE_LIMIT = "rate-limit"  # would wait beyond the bound
    TOO_LARGE = "too-large"
    SLOW_CLIENT = "slow-client"
    BAD_REQUEST = "bad-request"
    UNKNOWN_PATH = "unknown-path"
    UNAVAILABLE = "agent-unavailable"  # no agent, or it failed
    UPSTREAM = "upstream-failed"  # exchange unreachable, TLS refused, timed out
    INTERNAL = "internal-error"  # a fault of the gateway's own (its type goes to stderr)


# reason -> (Spot error, Spot status, Futures error, Futures status)
_TABLE: dict[Reason, tuple[str, int, str, int]] = {
    Reason.INVALID_KEY: ("EAPI:Invalid key", 200, "authenticationError", 200),
    Reason.INVALID_SIGNATURE: ("EAPI:Invalid signature", 200, "authenticationError", 200),
    Reason.PERMISSION: ("EGeneral:Permission denied", 200, "authenticationError", 200),
    Reason.POLICY: ("EGeneral:Permission denied", 200, "authenticationError", 200),
    Reason.RATE_LIMIT: ("EAPI:Rate limit exceeded", 200, "apiLimitExceeded", 429),
    Reason.TOO_LARGE: ("EGeneral:Invalid arguments", 413, "requestTooLarge", 413),
    Reason.SLOW_CLIENT: ("EGeneral:Invalid arguments", 408, "requestTimeout", 408),
    Reason.BAD_REQUEST: ("EGeneral:Invalid arguments", 400, "invalidArgument", 400),
    Reason.UNKNOWN_PATH: ("EGeneral:Unknown method", 404, "notFound", 404),
    Reason.UNAVAILABLE: ("EService:Unavailable", 503, "serviceUnavailable", 503),
    Reason.UPSTREAM: ("EService:Unavailable", 502, "serviceUnavailable", 502),
    Reason.INTERNAL: ("EGeneral:Internal error", 500, "serverError", 500),
}


@dataclass(frozen=True)
class Refusal:
    reason: Reason
    status: int
    body: bytes


def refusal(api: Api, reason: Reason, detail: str = "") -> Refusal:
    """The answer for `reason`. `detail` (a policy refusal's message) follows Kraken's own
    error as a second Spot error (`EGeneral:Permission denied:<detail>`, so clients that
    match the first exactly still raise their permission error) or a Futures `message`."""
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

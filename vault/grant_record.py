"""A grant record: one bot's credential pair for one entry, and its sealed plaintext layout.

What a grant is and allows is described in `grant_ops` (the operations on a vault's grants)
and `grant_checks` (what a grant may do). This module is the record alone, so that the codec
can parse one without loading the operations.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from . import fileformat
from .entries import Entry, check_name, now_utc, record_plaintext
from .errors import FormatError
from .exchanges.profiles import key_id as _key_id
from .scopes import General, Withdrawal
from .secret import Secret
from .trading_policy.model import Policy

__all__ = ["GRANT_PREFIX", "KEY_PREFIX", "KEY_RE", "Grant", "is_grant_record"]

GRANT_PREFIX = "grant:"
KEY_PREFIX = "bvg_"
KEY_RE = re.compile(r"bvg_[A-Za-z0-9_-]{52}")
_KEY_BYTES = 39  # 52 base64 characters, no padding
_SECRET_BYTES = 64  # as Kraken's secrets
_SCHEMA = 1
_SCHEMA_POLICY = 2  # the same record with a trading policy


def is_grant_record(name: str) -> bool:
    return name.startswith(GRANT_PREFIX)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=0).isoformat(
        ).replace("+00:00", "Z")


@dataclass(frozen=True)
class Grant:
    """One bot's grant. `api_secret` is a `Secret`: printing a Grant never shows it."""

    bot: str
    entry: str
    general: General
    withdrawal: Withdrawal
    api_key: str
    api_secret: Secret = field(repr=False)
    key_id: str = ""  # the real key it was issued for: exchanges.profiles.key_id
    created_at: str = field(default_factory=now_utc)
    expires_at: float | None = None  # seconds since the epoch (wall clock), None: never
    revoked_at: str | None = None
    entry_id: bytes = field(default=b"", repr=False, compare=False)
    # The key pair it was issued for (Entry.pair_identity): what it is bound to.
    pair: str = ""
    # Every request must carry a nonce (Futures lets a request go without one).
    require_nonce: bool = False
    policy: Policy = field(default_factory=Policy)  # trading limits; Policy(): none

    @property
    def name(self) -> str:
        """The record's name in the vault."""
        return GRANT_PREFIX + self.bot

    @classmethod
    def issue(cls, bot: str, entry: Entry, *, general: General, withdrawal: Withdrawal,
              expires_at: float | None, policy: Policy | None = None,
              require_nonce: bool = False) -> Grant:
        """A new grant with a fresh key and secret from the OS's CSPRNG."""
        key = KEY_PREFIX + base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode("ascii")
        secret = base64.b64encode(os.urandom(_SECRET_BYTES)).decode("ascii")
        return cls(bot=check_name(bot), entry=entry.name, general=general,
                   withdrawal=withdrawal, api_key=key, api_secret=Secret(secret),
                   key_id=_key_id(entry.exchange, entry.api_key),
                   expires_at=expires_at, entry_id=os.urandom(fileformat.ID_SIZE),
                   pair=entry.pair_identity, require_nonce=require_nonce,
                   policy=policy or Policy())

    def state(self, now: float) -> str:
        """"active", "revoked" or "expired" at wall-clock time `now`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def metadata(self, now: float | None = None) -> dict[str, Any]:
        """Everything but the secret, as plain JSON-ready values."""
        return {
            "bot": self.bot, "entry": self.entry, "api_key": self.api_key,
            "general": self.general.value, "withdrawal": self.withdrawal.value,
            "created_at": self.created_at,
            "expires_at": None if self.expires_at is None else _iso(self.expires_at),
            "revoked_at": self.revoked_at,
            "state": self.state(time.time() if now is None else now),
            "require_nonce": self.require_nonce,
            "policy": self.policy.to_doc(),
        }

    def with_changes(self, **changes: Any) -> Grant:
        return replace(self, **changes)

    def key_matches(self, api_key: str) -> bool:
        import hmac  # here: it loads OpenSSL, which commands that never check a grant skip

        return hmac.compare_digest(self.api_key.encode("ascii"),
                                   api_key.encode("utf-8", "surrogatepass"))

    def to_plaintext(self) -> bytes:
        # A grant with a policy is schema 2, so an older botvault refuses it ("written by a
        # newer botvault") instead of reading it without its limits.
        doc = {"v": _SCHEMA if self.policy.empty else _SCHEMA_POLICY, "kind": "grant",
               "bot": self.bot, "entry": self.entry,
               "general": self.general.value, "withdrawal": self.withdrawal.value,
               "api_key": self.api_key, "api_secret": self.api_secret.reveal(),
               "key_id": self.key_id, "created_at": self.created_at, "expires_at": self.expires_at,
               "revoked_at": self.revoked_at}
        if self.pair:
            doc["pair"] = self.pair
        if self.require_nonce:
            doc["require_nonce"] = True
        if not self.policy.empty:  # a grant without one is written exactly as before
            doc["policy"] = self.policy.to_doc()
        return record_plaintext(self.name, doc)

    @classmethod
    def from_plaintext(cls, raw: bytes, entry_id: bytes) -> Grant:
        try:
            doc = json.loads(raw)
            if doc.pop("v") not in (_SCHEMA, _SCHEMA_POLICY) or doc.pop("kind") != "grant":
                raise FormatError("a grant was written by a newer botvault",
                                  hint="upgrade botvault")
            expires = _expiry(doc["expires_at"])
            return cls(bot=str(doc["bot"]), entry=str(doc["entry"]),
                       general=General(doc["general"]),
                       withdrawal=Withdrawal(doc["withdrawal"]),
                       api_key=str(doc["api_key"]), api_secret=Secret(doc["api_secret"]),
                       key_id=str(doc["key_id"]), created_at=str(doc["created_at"]),
                       expires_at=expires,
                       revoked_at=doc["revoked_at"], entry_id=entry_id,
                       pair=str(doc.get("pair", "")),
                       require_nonce=doc.get("require_nonce") is True,
                       policy=Policy.from_doc(doc.get("policy")))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise FormatError("a grant in the vault is malformed") from None


def _expiry(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expires_at")
    return float(value)



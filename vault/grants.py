"""Grants: a credential pair issued to one bot for one entry, usable only at the gateway.

A grant looks to a bot exactly like a Kraken key pair: an api key (`bvg_` and 52 url-safe
base64 characters, 56 in all like Kraken's) and a secret (base64 of 64 random bytes). The
bot signs with it as it would with the real key; the agent checks that signature with the
grant secret and signs again with the real key (see `agent.ops`). The grant names its
entry and carries its own scopes, never above the entry's (`check_within`), and every
request is checked against both with the endpoint tables signing uses.

Grants are sealed records in the vault, like entries, named `grant:BOT` (a colon never
occurs in an entry name), so they are saved, backed up, re-sealed and exported with them.
A revoked grant stays as a record (so the gateway can say "revoked", not "unknown") until
a new grant for the same bot replaces it.

A grant is for one real key: it records the key's identity (`key_id`) when issued, and
follows its entry only through `rotate` (the old pair is then a retired entry of that
name). An entry removed, renamed, or replaced by another key under the same name leaves
the grant pointing nowhere ("unknown"): a bot never silently moves to another key.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import fileformat
from .entries import Entry, check_name, now_utc, record_plaintext
from .errors import (
    AlreadyExistsError,
    FormatError,
    GrantError,
    InvalidInputError,
    NotFoundError,
    ScopeError,
)
from .nonces import key_id as _key_id
from .scopes import General, Withdrawal, parse_general, parse_withdrawal
from .secret import Secret
from .trading_policy.model import Policy

if TYPE_CHECKING:
    from .core import Vault

__all__ = [
    "GRANT_PREFIX",
    "Grant",
    "GrantIndex",
    "add_grant",
    "check_within",
    "entry_of",
    "get_grant",
    "grants_for_export",
    "is_grant_record",
    "list_grants",
    "no_resurrection",
    "revoke_grant",
    "usable",
]

GRANT_PREFIX = "grant:"
KEY_PREFIX = "bvg_"
_KEY_RE = re.compile(r"bvg_[A-Za-z0-9_-]{52}")
_KEY_BYTES = 39  # 52 base64 characters, no padding
_SECRET_BYTES = 64  # as Kraken's secrets
_SCHEMA = 1
_SCHEMA_POLICY = 2  # the same record with a trading policy
MAX_EXPIRY_S = 10 * 365 * 24 * 3600.0


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
    key_id: str = ""  # the real key it was issued for: botvault.nonces.key_id
    created_at: str = field(default_factory=now_utc)
    expires_at: float | None = None  # seconds since the epoch (wall clock), None: never
    revoked_at: str | None = None
    entry_id: bytes = field(default=b"", repr=False, compare=False)
    policy: Policy = field(default_factory=Policy)  # trading limits; Policy(): none

    @property
    def name(self) -> str:
        """The record's name in the vault."""
        return GRANT_PREFIX + self.bot

    @classmethod
    def issue(cls, bot: str, entry: Entry, *, general: General, withdrawal: Withdrawal,
              expires_at: float | None, policy: Policy | None = None) -> Grant:
        """A new grant with a fresh key and secret from the OS's CSPRNG."""
        key = KEY_PREFIX + base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode("ascii")
        secret = base64.b64encode(os.urandom(_SECRET_BYTES)).decode("ascii")
        return cls(bot=check_name(bot), entry=entry.name, general=general,
                   withdrawal=withdrawal, api_key=key, api_secret=Secret(secret),
                   key_id=_key_id(entry.exchange, entry.api_key),
                   expires_at=expires_at, entry_id=os.urandom(fileformat.ID_SIZE),
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
                       policy=Policy.from_doc(doc.get("policy")))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise FormatError("a grant in the vault is malformed") from None


def _expiry(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expires_at")
    return float(value)


def check_within(entry: Entry, general: General, withdrawal: Withdrawal) -> None:
    """A grant's scopes are never above its entry's (ScopeError names the axis)."""
    from .exchanges import endpoints

    if entry.retired:
        raise ScopeError(f"{entry.name!r} is a retired key pair and is never used again",
                         hint="grant the current entry it was rotated into")
    if entry.exchange not in endpoints.EXCHANGES:
        raise InvalidInputError(f"{entry.name!r} is a {entry.exchange} key; grants are for "
                                "Kraken Spot and Futures keys")
    if general is General.NONE:
        raise InvalidInputError("a grant's general scope is read-only or full")
    if not entry.general.allows(general):
        raise ScopeError(f"{entry.name!r} has general scope {entry.general.value}; a grant "
                         f"cannot have {general.value}", hint="grant at most the entry's scope")
    if withdrawal is Withdrawal.FULL and entry.withdrawal is not Withdrawal.FULL:
        raise ScopeError(f"{entry.name!r} has withdrawal scope none; a grant cannot have full",
                         hint="grant at most the entry's scope")


def check_endpoint(grant: Grant, entry: Entry, path: str, method: str, *,
                   allow_withdrawal: bool) -> None:
    """Refuse (ScopeError) an endpoint beyond the grant's scopes or the entry's own."""
    from .exchanges import endpoints

    # A grant without withdrawal is judged as an agent not allowed withdrawals: otherwise an
    # endpoint the tables do not know (a spelling such as `Withdr%61w` that a server routes
    # to Withdraw) would pass for an entry that can withdraw (found in review).
    may_withdraw = allow_withdrawal and grant.withdrawal is Withdrawal.FULL
    endpoints.check(entry.exchange, path, grant.general, grant.withdrawal,
                    allow_withdrawal=may_withdraw, method=method)
    endpoints.check(entry.exchange, path, entry.general, entry.withdrawal,
                    allow_withdrawal=may_withdraw, method=method)


def usable(grant: Grant | None, now: float) -> Grant:
    """`grant` if it may authenticate a request at `now`, else GrantError with the reason."""
    if grant is None:
        raise GrantError("unknown", "no grant has this api key")
    state = grant.state(now)
    if state != "active":
        raise GrantError(state, f"grant {grant.bot!r} is {state}",
                         hint="issue a new one with: botvault grant add")
    return grant


def entry_of(vault: Vault, grant: Grant) -> Entry:
    """The entry whose key `grant` now signs with: its entry, if that still holds the key
    the grant was issued for or a key it was rotated into; else GrantError("unknown")."""
    import hmac

    if grant.entry in vault:
        entry = vault.get(grant.entry)
        if hmac.compare_digest(_key_id(entry.exchange, entry.api_key), grant.key_id) or \
                _rotated_from(vault, grant):
            return entry
    raise GrantError("unknown", f"grant {grant.bot!r} was issued for a key that entry "
                     f"{grant.entry!r} no longer holds", hint="issue a new grant: botvault "
                     "grant add")


def _rotated_from(vault: Vault, grant: Grant) -> bool:
    """True when the grant's key is a retired pair of its entry (kept by `rotate`)."""
    import hmac

    for entry in vault.list(retired=True):
        stem = entry.name.rsplit(".retired-", 1)[0]
        if entry.retired and stem != entry.name and grant.entry.startswith(stem) and \
                hmac.compare_digest(_key_id(entry.exchange, entry.api_key), grant.key_id):
            return True
    return False


# -- the grants of a vault -----------------------------------------------------------------

_Records = dict[str, Any]


def _materialized(vault: Vault) -> list[Grant]:
    return [g for g in vault.records(GRANT_PREFIX) if isinstance(g, Grant)]


def _grant_in(vault: Vault, records: _Records, name: str) -> Grant:
    record = vault.record_from(records, name)
    if not isinstance(record, Grant):
        raise FormatError("a grant in the vault is malformed")
    return record


def list_grants(vault: Vault) -> list[Grant]:
    """Every grant (revoked and expired ones too), by bot name."""
    return _materialized(vault)


def get_grant(vault: Vault, bot: str) -> Grant:
    for grant in _materialized(vault):
        if grant.bot == bot:
            return grant
    raise NotFoundError(f"no grant for {bot!r}", hint="see them with: botvault grant list")


class GrantIndex:
    """Grants by api key for one open vault, rebuilt when the vault's generation changes
    (every save, here or in another process, makes a new one), so finding a grant costs a
    dict lookup, not a scan of every record, on each of the gateway's requests. The api
    key is public (as an exchange's api key); the secret is what authenticates."""

    def __init__(self) -> None:
        self._seen: tuple[bytes, int] | None = None
        self._by_key: dict[str, Grant] = {}

    def find(self, vault: Vault, api_key: str) -> Grant | None:
        if not isinstance(api_key, str) or not _KEY_RE.fullmatch(api_key):
            return None
        seen = (vault.vault_id, vault.generation)
        if seen != self._seen:
            self._by_key = {g.api_key: g for g in list_grants(vault)}
            self._seen = seen
        return self._by_key.get(api_key)


def add_grant(vault: Vault, bot: str, *, entry: str, general: General | str,
              withdrawal: Withdrawal | str, expires_in: float | None = None,
              now: Callable[[], float] = time.time, policy: Policy | None = None) -> Grant:
    """Issue a grant for `bot` on `entry`. Refuses scopes above the entry's, and a bot that
    holds an active grant already (revoke it first); replaces a revoked or expired one."""
    check_name(bot)
    wanted_general, wanted_withdrawal = parse_general(general), parse_withdrawal(withdrawal)
    if expires_in is not None and not 0 < expires_in <= MAX_EXPIRY_S:
        raise InvalidInputError("a grant's expiry is a positive duration of at most 10 years")
    issued: list[Grant] = []

    def op(records: _Records) -> _Records:
        target = vault.entry_from(records, entry)
        check_within(target, wanted_general, wanted_withdrawal)
        moment = now()
        old = records.get(GRANT_PREFIX + bot)
        if old is not None:
            existing = _grant_in(vault, records, GRANT_PREFIX + bot)
            if existing.state(moment) == "active":
                raise AlreadyExistsError(f"{bot!r} has an active grant already",
                                         hint=f"revoke it first: botvault grant revoke {bot}")
        grant = Grant.issue(bot, target, general=wanted_general, withdrawal=wanted_withdrawal,
                            expires_at=None if expires_in is None else moment + expires_in,
                            policy=policy)
        records[grant.name] = grant
        issued.append(grant)
        return records

    vault.update_records(op)
    return issued[0]


def grants_for_export(source: Vault, entries: Iterable[str]) -> list[Grant]:
    """The grants of `source` on these entries, as they are (revoked ones stay revoked),
    with fresh record ids for the export that will hold them."""
    chosen = set(entries)
    return [g.with_changes(entry_id=os.urandom(fileformat.ID_SIZE))
            for g in list_grants(source) if g.entry in chosen]


def no_resurrection(current: _Records, restored: _Records) -> dict[str, Grant]:
    """The grants of a backup being restored that must change so that a restore never
    revives one: a grant that is not active now with the same key comes back revoked (a
    revoked bot's pair is exactly what an attacker holds), and one that is keeps the
    trading policy it has now. Returns name -> replacement."""
    from .codec import materialize_record

    changed: dict[str, Grant] = {}
    for name, slot in restored.items():
        if not is_grant_record(name):
            continue
        old = materialize_record(name, slot)
        if not isinstance(old, Grant) or old.revoked_at is not None:
            continue
        now = current.get(name)
        mine = materialize_record(name, now) if now is not None else None
        if isinstance(mine, Grant) and mine.key_matches(old.api_key) and \
                mine.revoked_at is None:
            if mine.policy != old.policy:
                # Nor does it bring back an older trading policy: the limits set since
                # (narrowed after a bot misbehaved, say) stay.
                changed[name] = old.with_changes(policy=mine.policy)
            continue
        revoked_at = mine.revoked_at if isinstance(mine, Grant) and mine.revoked_at and \
            mine.key_matches(old.api_key) else now_utc()
        changed[name] = old.with_changes(revoked_at=revoked_at)
    return changed


def revoke_grant(vault: Vault, bot: str) -> Grant:
    """Mark `bot`'s grant revoked, effective at the agent's next request (it reloads the
    vault before each one). Revoking a revoked grant is not an error."""
    done: list[Grant] = []

    def op(records: _Records) -> _Records:
        name = GRANT_PREFIX + bot
        if name not in records:
            raise NotFoundError(f"no grant for {bot!r}",
                                hint="see them with: botvault grant list")
        grant = _grant_in(vault, records, name)
        if grant.revoked_at is None:
            grant = grant.with_changes(revoked_at=now_utc())
            records[name] = grant
        done.append(grant)
        return records

    vault.update_records(op)
    return done[0]

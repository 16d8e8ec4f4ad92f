"""The operations on a vault's grants (issue, list, revoke, resolve to an entry).

A grant is a credential pair issued to one bot for one entry, usable only at the gateway.

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

import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import fileformat
from .codec import materialize_record
from .entries import Entry, check_name, now_utc
from .errors import AlreadyExistsError, FormatError, GrantError, InvalidInputError, NotFoundError
from .grant_checks import check_within
from .grant_record import GRANT_PREFIX, KEY_RE, Grant, is_grant_record
from .scopes import General, Withdrawal, parse_general, parse_withdrawal
from .trading_policy.model import Policy

if TYPE_CHECKING:
    from .open_vault import Vault

__all__ = [
    "MAX_EXPIRY_S",
    "ORPHANED",
    "GrantIndex",
    "add_grant",
    "bound_entry",
    "entry_of",
    "get_grant",
    "grant_document",
    "grant_documents",
    "grant_states",
    "grants_for_export",
    "list_grants",
    "no_resurrection",
    "revoke_grant",
]

MAX_EXPIRY_S = 10 * 365 * 24 * 3600.0


ORPHANED = "orphaned: its key was removed"


def bound_entry(vault: Vault, grant: Grant) -> Entry | None:
    """The live entry holding the pair `grant` was issued for, or a pair `rotate` made from
    it (the chain each rotation records), whatever its name now; None when that pair and
    every pair rotated from it are gone. A pair added later under the same name, a rename
    onto it or an import is another pair: never this grant's."""
    import hmac

    bound = grant.pair or "key:" + grant.key_id  # a grant saved before pairs had an id
    for entry in vault.list():
        if hmac.compare_digest(entry.pair_identity, bound) or bound in entry.rotated_from:
            return entry
    return None


def entry_of(vault: Vault, grant: Grant) -> Entry:
    """The entry whose key `grant` now signs with (`bound_entry`); GrantError("orphaned")
    when its key was removed."""
    entry = bound_entry(vault, grant)
    if entry is None:
        raise GrantError("orphaned", f"grant {grant.bot!r} is orphaned: the key pair it was "
                         "issued for was removed", hint="issue a new grant: botvault grant add")
    return entry


def grant_documents(vault: Vault, now: float | None = None) -> list[dict[str, Any]]:
    """Every grant's metadata (never its secret), with its state: active, revoked,
    expired, or orphaned (its key was removed), and the name its key has now."""
    moment = time.time() if now is None else now
    return [_document(vault, grant, moment) for grant in list_grants(vault)]


def grant_document(vault: Vault, bot: str, now: float | None = None) -> dict[str, Any]:
    """One grant's metadata with its state (`grant_documents`)."""
    return _document(vault, get_grant(vault, bot), time.time() if now is None else now)


def _document(vault: Vault, grant: Grant, moment: float) -> dict[str, Any]:
    doc = grant.metadata(moment)
    entry = bound_entry(vault, grant)
    if entry is not None:
        doc["entry"] = entry.name
    elif doc["state"] == "active":
        doc["state"] = ORPHANED
    return doc


def grant_states(vault: Vault, now: float | None = None) -> dict[str, str]:
    """bot -> its state (`grant_documents`)."""
    return {doc["bot"]: doc["state"] for doc in grant_documents(vault, now)}


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
        if not isinstance(api_key, str) or not KEY_RE.fullmatch(api_key):
            return None
        seen = (vault.vault_id, vault.generation)
        if seen != self._seen:
            self._by_key = {g.api_key: g for g in list_grants(vault)}
            self._seen = seen
        return self._by_key.get(api_key)


def add_grant(vault: Vault, bot: str, *, entry: str, general: General | str,
              withdrawal: Withdrawal | str, expires_in: float | None = None,
              now: Callable[[], float] = time.time, policy: Policy | None = None,
              require_nonce: bool = False) -> Grant:
    """Issue a grant for `bot` on `entry`'s key pair. Refuses scopes above the entry's, and
    a bot that holds an active grant already (revoke it first); replaces a revoked,
    expired or orphaned one. `require_nonce`: every request must carry a nonce (Futures
    lets one go without, as ccxt's krakenfutures sends them)."""
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
            if existing.state(moment) == "active" and bound_entry(vault, existing) is not None:
                raise AlreadyExistsError(f"{bot!r} has an active grant already",
                                         hint=f"revoke it first: botvault grant revoke {bot}")
        grant = Grant.issue(bot, target, general=wanted_general, withdrawal=wanted_withdrawal,
                            expires_at=None if expires_in is None else moment + expires_in,
                            policy=policy, require_nonce=require_nonce)
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
            for g in list_grants(source)
            if (e := bound_entry(source, g)) is not None and e.name in chosen]


def no_resurrection(current: _Records, restored: _Records) -> dict[str, Grant]:
    """The grants of a backup being restored that must change so that a restore never
    revives one: a grant that is not active now with the same key comes back revoked (a
    revoked bot's pair is exactly what an attacker holds), and one that is keeps the
    trading policy it has now. Returns name -> replacement."""
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

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
from .exchanges.profiles import key_id as _key_id
from .grant_checks import check_within
from .grant_record import GRANT_PREFIX, KEY_RE, Grant, is_grant_record
from .scopes import General, Withdrawal, parse_general, parse_withdrawal
from .trading_policy.model import Policy

if TYPE_CHECKING:
    from .open_vault import Vault

__all__ = [
    "MAX_EXPIRY_S",
    "GrantIndex",
    "add_grant",
    "entry_of",
    "get_grant",
    "grants_for_export",
    "list_grants",
    "no_resurrection",
    "revoke_grant",
]

MAX_EXPIRY_S = 10 * 365 * 24 * 3600.0


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
        if not isinstance(api_key, str) or not KEY_RE.fullmatch(api_key):
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

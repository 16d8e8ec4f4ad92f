"""Making and checking entries before they are stored: a new entry validated field by field,
the secret as stored, one key in one entry, retired names, and "no such entry"."""

from __future__ import annotations

import os
import warnings

from . import codec, fileformat
from .did_you_mean import did_you_mean_hint
from .entries import (
    MAX_NAME,
    MAX_NOTE,
    Entry,
    check_name,
    check_nonce_unit,
    check_text,
    new_pair_id,
    now_utc,
)
from .errors import AlreadyExistsError, InvalidInputError, NotFoundError, VaultWarning
from .exchanges.validation import check_exchange, clean_secret, validate_api_key
from .nonces.marks import recorded_mark, with_mark
from .scopes import General, Withdrawal, parse_general, parse_withdrawal
from .secret import Secret

__all__ = ["KeyCache", "Records", "check_secret", "cleaned_secret", "new_entry", "not_found",
           "refuse_shared_key", "retired_name", "rotated_pair", "var_name", "with_marks"]

Records = dict[str, codec.Slot]
# name -> (slot, exchange, api_key): one parse per entry for "one key, one entry", reused
# while the slot object is unchanged (unchanged entries keep their slot).
KeyCache = dict[str, tuple[codec.Slot, str, str]]


def new_entry(name: str, *, exchange: str, api_key: str, api_secret: str | Secret,
              general: General | str, withdrawal: Withdrawal | str, account: str | None = None,
              note: str = "", nonce_unit: str = "ms", env_key: str | None = None,
              env_secret: str | None = None) -> Entry:
    """A validated entry, not yet stored (`Vault.add` stores one, `import_entries` many).
    Warns (VaultWarning) about what it repaired."""
    secret = cleaned_secret(check_exchange(exchange), api_secret)
    return Entry(
        name=check_name(name), exchange=exchange,
        api_key=validate_api_key(exchange, api_key), api_secret=Secret(secret),
        general=parse_general(general), withdrawal=parse_withdrawal(withdrawal),
        account=check_text("account label", account) if account else None,
        note=check_text("note", note, MAX_NOTE), nonce_unit=check_nonce_unit(nonce_unit),
        env_key=var_name(env_key), env_secret=var_name(env_secret),
        entry_id=os.urandom(fileformat.ID_SIZE), pair_id=new_pair_id())


def not_found(name: str, entries: Records) -> NotFoundError:
    names = [n for n in entries if codec.is_entry_name(n)]  # never suggest a grant
    hint = did_you_mean_hint(name, names, "see the names with: botvault list")
    return NotFoundError(f"no entry named {name!r}", hint=hint)


def check_secret(exchange: str, api_secret: str) -> str:
    """The secret as it would be stored (InvalidInputError if it cannot be), no warning."""
    return clean_secret(check_exchange(exchange), api_secret)[0]


def cleaned_secret(exchange: str, api_secret: str | Secret) -> str:
    """The secret as stored: validated, line-wrap whitespace removed with a warning (shown
    at the caller of `Vault.add` / `Vault.rotate`, two frames up)."""
    raw = api_secret.reveal() if isinstance(api_secret, Secret) else api_secret
    secret, removed = clean_secret(exchange, raw)
    if removed:
        warnings.warn(f"removed {removed} whitespace character{'s' if removed != 1 else ''} "
                      "from the secret (a line-wrap artefact of copying)", VaultWarning,
                      stacklevel=4)
    return secret


def refuse_shared_key(entries: Records, new: list[Entry], cache: KeyCache) -> None:
    """One key, one entry: two entries with one api key would share one nonce counter
    but not one request lock, so the exchange would see nonces out of order (exit 4)."""
    wanted: dict[tuple[str, str], str] = {}
    for entry in new:
        other = wanted.get((entry.exchange, entry.api_key))
        if other is not None:
            raise AlreadyExistsError(f"{entry.name!r} and {other!r} hold the same "
                                     f"{entry.exchange} api key",
                                     hint="one key is stored once; import it under one name")
        wanted[(entry.exchange, entry.api_key)] = entry.name
    for held_name, slot in entries.items():
        if not codec.is_entry_name(held_name):
            continue  # a grant names its entry's key; it does not hold one
        cached = cache.get(held_name)
        if cached is None or cached[0] is not slot:
            held = codec.materialize(held_name, slot)
            cached = cache[held_name] = (slot, held.exchange, held.api_key)
        if (cached[1], cached[2]) in wanted:
            raise AlreadyExistsError(f"entry {held_name!r} already holds this "
                                     f"{cached[1]} api key",
                                     hint=f"use {held_name!r}, or `botvault rotate "
                                          f"{held_name}` to replace its pair")


def retired_name(name: str, taken: Records) -> str:
    for n in range(1, 10_000):
        suffix = f".retired-{n}"
        candidate = name[: MAX_NAME - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise InvalidInputError(f"too many retired pairs for {name!r}",
                            hint="remove some with botvault rm")


def var_name(name: str | None) -> str | None:
    """An env var override is checked when it is set, not when a bot starts."""
    from .handover import validate_var_name

    return None if name is None else validate_var_name(name)


def with_marks(entries: Records, marks: dict[str, int]) -> Records:
    """`entries` with each nonce mark recorded where it is above the one recorded."""
    for name, mark in marks.items():
        if name in entries:
            entry = codec.materialize(name, entries[name])
            if mark > recorded_mark(entry):
                entries[name] = with_mark(entry, mark)
    return entries


def rotated_pair(current: Entry, api_key: str, secret: str) -> Entry:
    """The entry that takes `current`'s place in a rotate: the new pair (checked by the
    caller), with its own identity and the chain of the pairs it replaced (what a grant
    issued for one of them follows, and nothing else does). Refuses the pair stored now."""
    new = current.with_changes(api_key=api_key, api_secret=Secret(secret), created_at=now_utc(),
                               entry_id=os.urandom(fileformat.ID_SIZE), pair_id=new_pair_id(),
                               rotated_from=(*current.rotated_from, current.pair_identity))
    if new.api_key == current.api_key and new.api_secret == current.api_secret:
        raise InvalidInputError("the new key pair is the one already stored",
                                hint="create a new key on the exchange first")
    return new

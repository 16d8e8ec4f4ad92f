"""Checks on the entries of an open vault: withdrawal rights, key age, keys per account."""

from __future__ import annotations

from datetime import datetime, timezone

from ..entries import Entry
from ..exchanges.profiles import KRAKEN_KEYS_PER_ACCOUNT as KEYS_PER_ACCOUNT
from ..scopes import Withdrawal
from .finding import Finding


def _rotate_fix(names: list[str]) -> str:
    return "; ".join(f"botvault rotate {n}" for n in names)


def check_withdrawal_keys(entries: list[Entry]) -> list[Finding]:
    names = [e.name for e in entries if e.withdrawal is Withdrawal.FULL]
    if not names:
        return [Finding("withdrawal-keys", "ok", "no key can withdraw funds",
                        "A leaked trading key can lose money in trades, not move it away.",
                        None)]
    return [Finding(
        "withdrawal-keys", "warn", f"{len(names)} key(s) can withdraw funds",
        "Whoever gets one of these keys can send your funds off the exchange. Trading bots "
        "almost never need that; botvault hands them out only with --allow-withdrawal.",
        "on the exchange, create a key with Withdrawal API set to none and delete the old one,"
        " then: " + "; ".join(f"botvault rotate {n}; botvault edit {n} --withdrawal none"
                              for n in names),
        tuple(names))]


def _created(entry: Entry) -> datetime | None:
    try:
        created = datetime.fromisoformat(entry.created_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return created if created.tzinfo else created.replace(tzinfo=timezone.utc)


def check_key_age(entries: list[Entry], now: datetime, max_days: int) -> list[Finding]:
    aware_now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    old = []
    for entry in entries:
        created = _created(entry)
        if created is not None and (aware_now - created).days > max_days:
            old.append((entry.name, (aware_now - created).days))
    if not old:
        return [Finding("key-age", "ok", f"every key is at most {max_days} days old",
                        "Rotating keys regularly limits how long a leaked key stays useful.",
                        None)]
    return [Finding(
        "key-age", "warn", f"{len(old)} key(s) older than {max_days} days",
        "A key that has been in use for a long time has had more chances to leak (logs, old "
        "configs, backups). Create a new key on the exchange, store it with rotate, and "
        "delete the old one on the exchange.",
        _rotate_fix([n for n, _ in old]),
        tuple(f"{n} ({days} days)" for n, days in old))]


def check_account_limit(entries: list[Entry]) -> list[Finding]:
    counts: dict[str, int] = {}
    for entry in entries:
        if entry.account:
            counts[entry.account] = counts.get(entry.account, 0) + 1
    full = sorted(a for a, n in counts.items() if n >= KEYS_PER_ACCOUNT)
    if not full:
        return [Finding("account-limit", "ok",
                        f"no account label has {KEYS_PER_ACCOUNT} keys or more",
                        f"Kraken allows at most {KEYS_PER_ACCOUNT} API keys per account.",
                        None)]
    return [Finding(
        "account-limit", "warn",
        f"{len(full)} account(s) at Kraken's limit of {KEYS_PER_ACCOUNT} keys",
        f"Kraken allows at most {KEYS_PER_ACCOUNT} API keys per account; creating another "
        "will fail until an old one is deleted on the exchange.",
        "delete unused keys on the exchange, then: botvault rm NAME",
        tuple(f"{a}: {counts[a]} keys" for a in full))]

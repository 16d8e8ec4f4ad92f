"""The entry model: one exchange API key pair with its labels, and its (de)serialisation."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from .errors import FormatError, InvalidInputError, ScopeError
from .scopes import General, Withdrawal
from .secret import Secret

__all__ = ["NONCE_UNITS", "NS_PER_UNIT", "Entry", "check_live", "check_name", "check_nonce_unit",
           "new_pair_id", "unit_ns"]

# API nonce units (an entry's `nonce_unit`), defined here with the entry model and used by the
# nonce store, so that reading an entry loads no nonce code (`run` starts faster).
NS_PER_UNIT = {"ms": 1_000_000, "us": 1_000, "10ns": 10}
NONCE_UNITS = tuple(NS_PER_UNIT)  # in this order in --help and messages


def unit_ns(unit: str) -> int:
    ns = NS_PER_UNIT.get(unit) if isinstance(unit, str) else None
    if ns is None:
        raise InvalidInputError(
            f"nonce unit must be one of {', '.join(NONCE_UNITS)} (got {unit!r})",
            hint="ccxt and krakenex use ms, python-kraken-sdk uses 10ns")
    return ns

MAX_NAME = 64  # characters of an entry name
NAME_RE = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{MAX_NAME - 1}}}")
MAX_NOTE = 4096  # characters of a note
MAX_FIELD = 1024
_PAD = 256  # plaintexts are padded to a multiple of this, so lengths leak little
_SCHEMA = 1


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InvalidInputError(
            f"invalid entry name {name!r}",
            hint=f"names are 1-{MAX_NAME} characters of a-z 0-9 . _ -, starting with a letter "
                 "or digit")
    return name


ROTATED_INTO = "use the current entry it was rotated into"


def check_live(name: str, retired: bool, *, hint: str | None = ROTATED_INTO) -> None:
    """The one refusal of a retired pair (kept by `rotate`, never used again)."""
    if retired:
        raise ScopeError(f"{name!r} is a retired key pair and is never used again", hint=hint)


def check_nonce_unit(unit: str) -> str:
    unit_ns(unit)  # the nonce package's rule, one place
    return unit


def check_text(what: str, value: str, limit: int = MAX_FIELD) -> str:
    if len(value) > limit:
        raise InvalidInputError(f"the {what} is longer than {limit} characters")
    return value


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def now_utc() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Entry:
    """One key pair. `api_secret` is a `Secret`: printing an Entry never shows it."""

    name: str
    exchange: str
    api_key: str
    api_secret: Secret = field(repr=False)
    general: General
    withdrawal: Withdrawal
    account: str | None = None
    note: str = ""
    created_at: str = field(default_factory=now_utc)
    nonce_unit: str = "ms"
    env_key: str | None = None
    env_secret: str | None = None
    retired: bool = False
    entry_id: bytes = field(default=b"", repr=False, compare=False)
    # (nonce counter id, its high-water mark) as last recorded by vault.nonces.marks: sealed
    # with the entry, so every re-seal carries it. Machine state, not a label: not compared,
    # not in metadata().
    nonce_mark: tuple[str, int] | None = field(default=None, repr=False, compare=False)
    # The pair's identity: random, given by `add` and `import`, kept by edits and renames,
    # new on `rotate`, which records the pair it replaced in `rotated_from` (oldest first).
    # What a grant is bound to (grant_ops.bound_entry); "" in entries saved before it.
    pair_id: str = field(default="", repr=False, compare=False)
    rotated_from: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def pair_identity(self) -> str:
        """`pair_id`, or for an entry saved without one its key's identity."""
        from .exchanges.profiles import key_id

        return self.pair_id or "key:" + key_id(self.exchange, self.api_key)
    # The plaintext file `import` read this pair from (an absolute path, never its content),
    # so that doctor reports that file from any working directory while it still holds the
    # secret. Sealed with the entry and written only when set, as nonce_mark.
    imported_from: str | None = field(default=None, compare=False)

    @property
    def fingerprint(self) -> str:
        """A short digest of the pair, to compare what was pasted with what was stored."""
        import hashlib  # here: `run` reads entries but needs no fingerprint

        digest = hashlib.blake2b(
            self.api_key.encode("utf-8", "surrogatepass") + b"\0"
            + self.api_secret.reveal().encode("utf-8", "surrogatepass"),
            digest_size=8, person=b"botvault-fp").hexdigest()
        return "-".join(digest[i:i + 4] for i in range(0, 16, 4))

    def metadata(self) -> dict[str, Any]:
        """Everything but the secret, as plain JSON-ready values."""
        return {
            "name": self.name, "exchange": self.exchange, "api_key": self.api_key,
            "general": self.general.value, "withdrawal": self.withdrawal.value,
            "account": self.account, "note": self.note, "nonce_unit": self.nonce_unit,
            "created_at": self.created_at, "env_key": self.env_key,
            "env_secret": self.env_secret, "retired": self.retired,
        }

    def to_wire(self) -> dict[str, Any]:
        """The entry with its secret, as the agent hands it to `run`/`env` (never logged)."""
        return {**self.metadata(), "fingerprint": self.fingerprint,
                "api_secret": self.api_secret.reveal()}

    @classmethod
    def from_wire(cls, doc: dict[str, Any]) -> Entry:
        """The entry `to_wire` sent; InvalidInputError for anything else. The fingerprint is
        recomputed, never taken from the wire."""
        try:
            return cls(
                name=check_name(str(doc["name"])), exchange=str(doc["exchange"]),
                api_key=str(doc["api_key"]), api_secret=Secret(str(doc["api_secret"])),
                general=General(doc["general"]), withdrawal=Withdrawal(doc["withdrawal"]),
                account=_opt_str(doc.get("account")), note=str(doc.get("note", "")),
                created_at=str(doc.get("created_at", "")),
                nonce_unit=str(doc.get("nonce_unit", "ms")),
                env_key=_opt_str(doc.get("env_key")), env_secret=_opt_str(doc.get("env_secret")),
                retired=doc.get("retired") is True)
        except (KeyError, TypeError, ValueError):
            raise InvalidInputError("malformed entry") from None

    def with_changes(self, **changes: Any) -> Entry:
        return replace(self, **changes)

    def to_plaintext(self) -> bytes:
        doc = self.metadata()
        doc["v"] = _SCHEMA
        doc["api_secret"] = self.api_secret.reveal()
        if self.nonce_mark is not None:
            doc["nonce_mark"] = list(self.nonce_mark)
        if self.pair_id:
            doc["pair_id"] = self.pair_id
        if self.rotated_from:
            doc["rotated_from"] = list(self.rotated_from)
        if self.imported_from is not None:
            doc["imported_from"] = self.imported_from
        return record_plaintext(self.name, doc)

    @classmethod
    def from_plaintext(cls, raw: bytes, entry_id: bytes) -> Entry:
        """Parse an authenticated record; a bad one means a bug or a newer writer."""
        try:
            doc = json.loads(raw)
            if doc.pop("v") != _SCHEMA:
                raise FormatError("an entry was written by a newer botvault",
                                  hint="upgrade botvault")
            doc["api_secret"] = Secret(doc["api_secret"])
            doc["general"] = General(doc["general"])
            doc["withdrawal"] = Withdrawal(doc["withdrawal"])
            doc["retired"] = bool(doc.get("retired", False))
            if "nonce_mark" in doc:
                doc["nonce_mark"] = _nonce_mark(doc["nonce_mark"])
            doc["pair_id"] = str(doc.get("pair_id", ""))
            doc["rotated_from"] = tuple(str(p) for p in doc.get("rotated_from", ()))
            if "imported_from" in doc:
                doc["imported_from"] = _import_source(doc["imported_from"])
            return cls(**doc, entry_id=entry_id)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise FormatError("an entry in the vault is malformed") from None


def new_pair_id() -> str:
    """A fresh pair identity (Entry.pair_id)."""
    import os

    return os.urandom(12).hex()
def _import_source(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError("a malformed import source")
    return raw


def _nonce_mark(raw: Any) -> tuple[str, int]:
    counter, value = raw
    if not isinstance(counter, str) or type(value) is not int or value < 0:
        raise ValueError("a malformed nonce mark")
    return counter, value


def record_plaintext(name: str, doc: dict[str, Any]) -> bytes:
    """What a record (entry or grant) seals: its name, a newline, the JSON document, padded
    with spaces to a multiple of _PAD. The name leads, so that opening a vault can index
    records without parsing them."""
    # ensure_ascii keeps any str (even lone surrogates) representable and round-trippable.
    raw = json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    raw = name.encode("ascii") + b"\n" + raw
    return raw + b" " * (-len(raw) % _PAD)

"""Every error botvault raises on purpose.

`VaultError` is the one base and is never raised directly. Each subclass carries the CLI exit
code it maps to (docs/commands.md, "Exit codes") and an optional hint that tells the user
what to do. Errors that describe bad input also subclass `ValueError`, as argon2-cffi does.
Messages never contain secret material: they name what failed, not the value.

Exit codes, one meaning each (docs/commands.md "Exit codes" lists the same): 0 ok,
1 unexpected (a bug; the one VaultError with it is ClosedError, a caller's bug), 2 invalid
input, 3 authentication, 4 not found / already exists, 5 locked, 6 refused by scope policy,
7 insecure permissions, 8 format, 9 conflict, 10 doctor found something unsafe (not an
error), 11 agent failure, 12 refused by the operating system (disk full, I/O error: an
OSError, not a VaultError), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

__all__ = [
    "EXIT_CODES",
    "AgentError",
    "AlreadyExistsError",
    "AuthenticationError",
    "BusyError",
    "ClosedError",
    "ConflictError",
    "FormatError",
    "GrantError",
    "InsecurePermissionsError",
    "InvalidInputError",
    "KeyChangedError",
    "LockedError",
    "NotFoundError",
    "PartialWriteError",
    "PolicyError",
    "RollbackError",
    "ScopeError",
    "VaultError",
    "VaultWarning",
]


# Every exit code the command line uses, with its one meaning: `--help` prints this table,
# README's "Exit codes" table lists the same (tests/test_exit_codes.py holds them together).
EXIT_CODES: dict[int, str] = {
    0: "ok",
    1: "unexpected: a bug in botvault",
    2: "invalid input or usage",
    3: "wrong passphrase, or the vault was modified",
    4: "not found / already exists",
    5: "locked: no agent and no way to ask for a passphrase",
    6: "refused by scope policy",
    7: "insecure permissions",
    8: "not a vault, corrupt or unsupported",
    9: "conflict: another process changed or holds it; run the command again",
    10: "doctor found something unsafe",
    11: "the agent failed",
    12: "the operating system refused (disk full, I/O error)",
    13: "busy: the agent is at its connection limits; try again",
    130: "interrupted (Ctrl-C); nothing was changed",
}


class VaultError(Exception):
    """Base of every botvault error. Never raised directly."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidInputError(VaultError, ValueError):
    """Bad input: a malformed name, secret, flag value or KDF parameter (exit 2)."""

    exit_code = 2


class AuthenticationError(VaultError):
    """Wrong passphrase or the vault was modified (exit 3).

    Deliberately opaque: which check failed is never said, so the error cannot be used as
    an oracle against the file.
    """

    exit_code = 3

    def __init__(self, message: str = "wrong passphrase or the vault was modified", *,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)


class GrantError(AuthenticationError):
    """A grant that cannot authenticate this request (exit 3).

    `reason` is one of "unknown", "revoked", "expired" (the grant), "signature" (the bot's
    signature does not verify), "changed" (the grant now points at another key), "orphaned"
    (its key was removed), "stale" or "replayed" (the request's nonce is outside the replay
    window, or the request was accepted once already) or "busy". The gateway answers each
    as the exchange answers a bad key, signature or nonce.
    """

    REASONS = frozenset({"unknown", "revoked", "expired", "signature", "changed", "orphaned",
                         "stale", "replayed", "busy"})

    def __init__(self, reason: str, message: str | None = None, *,
                 hint: str | None = None) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown grant error reason {reason!r}")
        super().__init__(message or f"grant refused: {reason}", hint=hint)
        self.reason = reason


class NotFoundError(VaultError):
    """No entry (or backup, or vault) of that name (exit 4)."""

    exit_code = 4


class AlreadyExistsError(VaultError):
    """An entry or vault of that name exists already (exit 4)."""

    exit_code = 4


class LockedError(VaultError):
    """No running agent and no way to ask for a passphrase (exit 5)."""

    exit_code = 5


class BusyError(VaultError):
    """The agent is running but at its connection limits (exit 13): its listen queue stayed
    full, or it closed this client's connection again to admit others. Nothing is locked;
    trying again works once the burst has passed."""

    exit_code = 13


class ScopeError(VaultError):
    """Refused by scope policy (exit 6)."""

    exit_code = 6


class PolicyError(ScopeError):
    """A request beyond its grant's trading policy (exit 6). `rule` names the rule
    (botvault.trading_policy.RULES); the message names the numbers."""

    def __init__(self, rule: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.rule = rule


class InsecurePermissionsError(VaultError):
    """A file or directory is readable by others, foreign-owned or a symlink (exit 7)."""

    exit_code = 7


class FormatError(VaultError):
    """Not a vault, unsupported version, truncated, or parameters out of range (exit 8).

    Found without the passphrase.
    """

    exit_code = 8


class ConflictError(VaultError):
    """Another process changed or holds what this one needs (exit 9): it saved the vault after
    this one loaded it, or holds a key's request order longer than the timeout.

    Raised instead of overwriting newer data; the library reloads and retries where it can.
    Retrying the command is the fix.
    """

    exit_code = 9


class ClosedError(VaultError, ValueError):
    """A closed `Vault` or nonce store was used (exit 1: a bug in the program using it, not
    a state of the vault, so it has no code of its own). Also a ValueError, as Python's own
    closed files raise."""

    exit_code = 1


class AgentError(VaultError):
    """The agent failed, timed out, or answered something this client does not understand
    (exit 11). `botvault lock` and `botvault unlock` start it afresh."""

    exit_code = 11


class RollbackError(AuthenticationError):
    """The file is an older generation than one already seen on this machine (exit 3)."""


class KeyChangedError(ConflictError):
    """The passphrase was changed (new data key) since this process opened the vault."""


class PartialWriteError(VaultError):
    """A multi-file write failed part-way (the operating system refused: exit 12, as for an
    OSError); the message says exactly what was changed."""

    exit_code = 12


class VaultWarning(UserWarning):
    """Something the user should know, e.g. whitespace removed from a pasted secret."""

"""A holder for secret strings that never shows its value by accident."""

from __future__ import annotations

from typing import NoReturn

__all__ = ["Secret"]

_REDACTED = "Secret('<redacted>')"


class Secret:
    """An api secret (or any secret string). `repr`, `str` and formatting are redacted.

    The value comes out only through `reveal()`, so an f-string, a log line or a traceback
    that shows the object shows nothing. Equality is constant-time. Python strings are
    immutable and cannot be wiped; SECURITY.md says what that means.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        self._value = value

    def reveal(self) -> str:
        """The secret itself. Call it at the last moment, where the value is used."""
        return self._value

    def __repr__(self) -> str:
        return _REDACTED

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        import hmac  # here, not at the top: it loads OpenSSL, which --version does not need

        return hmac.compare_digest(self._value.encode("utf-8", "surrogatepass"),
                                   other._value.encode("utf-8", "surrogatepass"))

    def __hash__(self) -> int:
        raise TypeError("Secret is not hashable: a hash would leak information about it")

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret cannot be pickled")

    def __len__(self) -> int:
        return len(self._value)

"""`Finding`, the one result type every doctor check returns."""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("ok", "warn", "fail")


@dataclass(frozen=True)
class Finding:
    """One result. `fix` is a command or action; `where` are paths ("path:line"), never
    values."""

    check: str
    severity: str
    title: str
    explanation: str
    fix: str | None
    where: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")

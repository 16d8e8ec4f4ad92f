"""Options whose values are a fixed set: `--help` lists them, a typo's error names them and
shell completion offers them (Typer turns an Enum into a choice). Also the entry-name
argument, which completes names from a running agent only (never by asking for a
passphrase)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

import typer

# The scope axes are the library's own enums and the exchange values its profile names; the
# other choices mirror library tuples (NONCE_UNITS, importer and handover formats), which a
# test holds them to.
from botvault.exchanges import profiles
from botvault.scopes import General, Withdrawal

__all__ = ["EnvFormat", "Exchange", "ExchangeOpt", "General", "GeneralOpt", "ImportFormat",
           "NameArg", "NonceUnit", "NonceUnitOpt", "Withdrawal", "WithdrawalOpt",
           "complete_names", "value_of"]


class Exchange(str, Enum):
    KRAKEN_FUTURES = profiles.KRAKEN_FUTURES
    KRAKEN_SPOT = profiles.KRAKEN_SPOT
    GENERIC = profiles.GENERIC


class NonceUnit(str, Enum):
    MS = "ms"
    US = "us"
    NS10 = "10ns"


class ImportFormat(str, Enum):
    ENV = "env"
    CCXT = "ccxt"
    FREQTRADE = "freqtrade"
    BOTVAULT = "botvault"


class EnvFormat(str, Enum):
    SH = "sh"
    DOTENV = "dotenv"
    JSON = "json"


def value_of(choice: Enum | str | None) -> str | None:
    """The plain string of a choice (Typer hands over the Enum member)."""
    if choice is None:
        return None
    return str(choice.value) if isinstance(choice, Enum) else choice


def complete_names(ctx: Any,
                   param: Any,  # noqa: ARG001 -- click's shell_complete signature
                   incomplete: str) -> list[str]:
    """Entry names from the running agent; nothing when it is locked (no prompt, ever)."""
    try:
        from botvault.session import running_agent
        from botvault.vault_path import resolve_vault_path

        client = running_agent(resolve_vault_path(ctx.find_root().params.get("vault")))
        if client is None:
            return []
        with client:
            names = [str(e["name"]) for e in client.list()]
    except Exception:  # completion must never fail, print or prompt
        return []
    return [n for n in names if n.startswith(incomplete)]


Text = Optional[str]  # noqa: UP045 -- Typer reads annotations at runtime on 3.10
NameArg = Annotated[str, typer.Argument(
    help="Entry name: a-z 0-9 . _ - (up to 64).", show_default=False, metavar="NAME",
    shell_complete=complete_names)]
ExchangeOpt = Annotated[Exchange, typer.Option(
    "--exchange", show_default=False, help="Exchange profile.")]
GeneralOpt = Annotated[Optional[General], typer.Option(  # noqa: UP045 -- see Text
    "--general", show_default=False,
    help="As on the exchange's key form, \"General API\" (asked when missing).")]
WithdrawalOpt = Annotated[Optional[Withdrawal], typer.Option(  # noqa: UP045 -- see Text
    "--withdrawal", show_default=False,
    help="As on the exchange's key form, \"Withdrawal API\" (asked when missing).")]
NonceUnitOpt = Annotated[NonceUnit, typer.Option("--nonce-unit", help="API nonce unit.")]

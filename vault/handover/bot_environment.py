"""The environment a bot is started with by `botvault run`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .execution import child_env

__all__ = ["HIDDEN_FROM_BOTS", "bot_environment"]

# Where the vault's passphrase lives is not the bot's business: a bot holds only its keys.
HIDDEN_FROM_BOTS = ("BOTVAULT_PASSPHRASE_FILE", "BOTVAULT_PASSPHRASE_COMMAND")


def bot_environment(base: Mapping[str, str],
                    assignments: Sequence[tuple[str, str]]) -> dict[str, str]:
    """`base` without the passphrase's sources, plus exactly `assignments`."""
    return child_env({k: v for k, v in base.items() if k not in HIDDEN_FROM_BOTS}, assignments)

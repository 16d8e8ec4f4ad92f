"""Presets: fixed variable names that known bots and libraries read their key pair from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["PRESETS", "Preset"]


@dataclass(frozen=True)
class Preset:
    """Fixed variable names a bot or library reads for an exchange key pair."""

    name: str
    key_var: str
    secret_var: str
    description: str
    source: str
    # The exchange profile whose keys the bot reads under these names; None: any profile.
    product: str | None = None


def _presets(*presets: Preset) -> Mapping[str, Preset]:
    return MappingProxyType({preset.name: preset for preset in presets})


# Only names read from the process environment belong here: a bot that takes its keys from
# a config file or its own store (hummingbot, OctoBot) or reads a .env file rather than the
# environment (jesse's ENV_VALUES come from dotenv_values('.env')) would ignore `run`.
# Name, key variable and secret variable are positional because ruff's S106 takes a
# `secret_var=` keyword for a hard-coded password.
PRESETS: Mapping[str, Preset] = _presets(
    Preset(
        "freqtrade",
        "FREQTRADE__EXCHANGE__KEY",
        "FREQTRADE__EXCHANGE__SECRET",
        description="freqtrade: exchange.key / exchange.secret through FREQTRADE__ variables",
        source=(
            "freqtrade docs, 'Configure the bot' > Environment variables "
            "(docs/configuration.md) and freqtrade/configuration/environment_vars.py: "
            "FREQTRADE__ prefix, '__' separates nesting levels"
        ),
    ),
    Preset(
        "kraken-sdk-spot",
        "KRAKEN_SPOT_API_KEY",
        "KRAKEN_SPOT_SECRET_KEY",
        description="python-kraken-sdk command line, `kraken spot` (also its kraken-mcp server)",
        source=(
            "btschwertfeger/python-kraken-sdk kraken/cli.py (click auto_envvar_prefix "
            "'KRAKEN', options --api-key/--secret-key on `spot`) and tests/cli/conftest.py"
        ),
        product="kraken-spot",
    ),
    Preset(
        "kraken-sdk-futures",
        "KRAKEN_FUTURES_API_KEY",
        "KRAKEN_FUTURES_SECRET_KEY",
        description="python-kraken-sdk command line, `kraken futures` (also its kraken-mcp server)",
        source=(
            "btschwertfeger/python-kraken-sdk kraken/cli.py (click auto_envvar_prefix "
            "'KRAKEN', options --api-key/--secret-key on `futures`) and tests/cli/conftest.py"
        ),
        product="kraken-futures",
    ),
    Preset(
        "nautilus-kraken-spot",
        "KRAKEN_SPOT_API_KEY",
        "KRAKEN_SPOT_API_SECRET",
        description="NautilusTrader Kraken adapter, Spot",
        source=(
            "nautechsystems/nautilus_trader nautilus_trader/adapters/kraken/config.py "
            "(KrakenDataClientConfig/KrakenExecClientConfig docstrings, 2026) and "
            "nautilus_kraken KrakenCredential::from_env_spot; the first 2025 releases of "
            "the adapter read KRAKEN_API_KEY/KRAKEN_API_SECRET instead"
        ),
        product="kraken-spot",
    ),
    Preset(
        "nautilus-kraken-futures",
        "KRAKEN_FUTURES_API_KEY",
        "KRAKEN_FUTURES_API_SECRET",
        description="NautilusTrader Kraken adapter, Futures (live)",
        source=(
            "nautechsystems/nautilus_trader nautilus_trader/adapters/kraken/config.py "
            "(docstrings, 2026) and nautilus_kraken KrakenCredential::from_env_futures"
        ),
        product="kraken-futures",
    ),
    Preset(
        "nautilus-kraken-futures-demo",
        "KRAKEN_FUTURES_DEMO_API_KEY",
        "KRAKEN_FUTURES_DEMO_API_SECRET",
        description="NautilusTrader Kraken adapter, Futures demo environment",
        source=(
            "nautilus_trader docs, integrations/kraken 'Demo environment setup', and "
            "nautilus_kraken KrakenCredential::from_env_futures(demo=true)"
        ),
        product="kraken-futures",
    ),
)


"""Must-hold 3: the client versions installed (and so tested) are the ones the
`integrations` extra allows, and every pin has an upper bound (the helpers override methods of
those versions)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version  # packaging comes with pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the pins are the same on 3.10

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _pins() -> dict[str, Requirement]:
    extra = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    return {Requirement(r).name: Requirement(r) for r in extra["integrations"]}


def test_every_client_is_pinned_with_an_upper_bound() -> None:
    pins = _pins()
    assert set(pins) == {"ccxt", "python-kraken-sdk", "krakenex"}
    for requirement in pins.values():
        operators = {spec.operator for spec in requirement.specifier}
        assert ">=" in operators and "<" in operators, requirement


@pytest.mark.parametrize("name", ["ccxt", "python-kraken-sdk", "krakenex"])
def test_installed_client_is_inside_its_pin(name: str) -> None:
    try:
        installed = Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed")
    requirement = _pins()[name]
    assert requirement.specifier.contains(installed), (name, installed, requirement)
    # The lower bound is a version the tests were run against; say which in the integrations page.
    low = next(s.version for s in requirement.specifier if s.operator == ">=")
    page = (PYPROJECT.parent / "docs" / "integrations.md").read_text()
    assert f"{name}>={low}" in page

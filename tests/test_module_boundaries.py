"""No module of botvault (vault/, cli/) uses another module's private names: an underscore
name is private to the module that defines it, so renaming it can never break a neighbour.

Checked on the syntax tree: `from .x import _name`, `import botvault._x`, `from ._x import y`
and `imported._name` (an attribute read through a name bound by a first-party import).
Third-party private modules (`nacl._sodium`, with its fallback) are outside this rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The test-only seam (vault/_testing, left out of the wheel) flips crypto's private switch on
# purpose, as the tests do: a public switch in the shipped library would invite its use.
EXEMPT = {Path("vault/_testing/__init__.py")}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _first_party(node: ast.ImportFrom) -> bool:
    return node.level > 0 or (node.module or "").split(".")[0] == "botvault"


def violations(source: str) -> list[str]:
    """Each use of another module's private name in `source`, as 'line: what'."""
    tree = ast.parse(source)
    imported: set[str] = set()  # local names bound to first-party modules or their names
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _first_party(node):
            module = node.module or ""
            if any(_private(part) for part in module.split(".")):
                found.append(f"{node.lineno}: from {'.' * node.level}{module}")
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{node.lineno}: import {alias.name}")
                imported.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] != "botvault":
                    continue
                if any(_private(part) for part in parts):
                    found.append(f"{node.lineno}: import {alias.name}")
                imported.add(alias.asname or parts[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in imported):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return sorted(found)


def _sources() -> list[Path]:
    return sorted(p.relative_to(ROOT) for folder in ("vault", "cli")
                  for p in (ROOT / folder).rglob("*.py"))


def test_no_module_uses_another_modules_private_names() -> None:
    found = {str(path): v for path in _sources() if path not in EXEMPT
             for v in [violations((ROOT / path).read_text())] if v}
    assert found == {}


def test_the_sources_are_found() -> None:
    sources = _sources()
    assert Path("vault/open_vault.py") in sources and Path("cli/entry_cmds.py") in sources
    assert set(sources) >= EXEMPT


@pytest.mark.parametrize("source", [
    "from .files import _lstat\n",
    "from ..handover.values import _check_assignments as check\n",
    "from botvault.open_vault import _read\n",
    "from ._testing import cheap_kdf\n",
    "import botvault._testing\n",
    "from . import crypto\nx = crypto._test_kdf_allowed\n",
    "import botvault.crypto as c\nc._fast_open\n",
    "from .open_vault import Vault\nVault._opened\n",
])
def test_a_private_name_across_modules_is_caught(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize("source", [
    "from .grants import key_id as _key_id\n",  # a private alias of a public name
    "from nacl._sodium import ffi\n",  # third-party
    "import os\nos._exit\n",  # third-party / standard library
    "from . import crypto\ncrypto.__name__\n",  # dunder
    "def _own() -> None: ...\n_own()\n",  # the module's own private name
    "from .open_vault import Vault\nclass V:\n    def f(self) -> None:\n        self._x = 1\n",
])
def test_allowed_uses_pass(source: str) -> None:
    assert violations(source) == []

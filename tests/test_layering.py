"""Where things live, read from the source (ast): cli/ parses, calls the library, prints.

cli/ imports no crypto, file format, vault file, save engine or codec module, and not the
signing internals (one signing sequence serves the agent and `botvault sign`: the library's);
the data key is read only inside `Vault`, and handed out only by `Vault.hand_out_data_key`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.test_import_graph import absolute_module

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / "cli"
LIBRARY = REPO / "vault"
FORBIDDEN_IN_CLI = frozenset({"botvault.crypto", "botvault.fileformat", "botvault.vault_file",
                              "botvault.codec", "botvault.agent.signing", "botvault.save_engine",
                              "botvault.rekey", "botvault.seen_generations"})


def _modules_imported(path: Path, package: str) -> set[str]:
    """Every module `path` imports, absolute, with `from X import y` counted as X and X.y."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = absolute_module(node, package)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _forbidden(path: Path, package: str) -> set[str]:
    return {m for m in _modules_imported(path, package)
            if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IN_CLI)}


def test_the_check_sees_every_spelling(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import botvault.vault_file\nfrom botvault import crypto\n"
                      "from ..fileformat import HEADER_SIZE\nfrom botvault.agent import signing\n"
                      "def f():\n    from botvault.codec import Keys\n")
    assert _forbidden(sample, "botvault.cli") == {
        "botvault.vault_file", "botvault.crypto", "botvault.fileformat",
        "botvault.fileformat.HEADER_SIZE", "botvault.agent.signing", "botvault.codec",
        "botvault.codec.Keys"}


@pytest.mark.parametrize("path", sorted(CLI.rglob("*.py")), ids=lambda p: p.name)
def test_cli_imports_no_crypto_format_store_or_signing_module(path: Path) -> None:
    assert _forbidden(path, "botvault.cli") == set(), \
        f"{path.name}: ask the library (botvault.session, kdf_choice, install) instead"


def _data_key_reads(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "_data_key"]


@pytest.mark.parametrize("path", sorted([*CLI.rglob("*.py"), *LIBRARY.rglob("*.py")]),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_the_private_data_key_is_read_only_inside_vault(path: Path) -> None:
    if path == LIBRARY / "open_vault.py":
        return  # the class that holds it
    assert _data_key_reads(path) == [], \
        f"{path.name} reads Vault._data_key: use Vault.hand_out_data_key()"


@pytest.mark.parametrize(("statement", "named"), [
    ("import vault.errors", "import botvault, not vault"),
    ("from vault.open_vault import Vault", "import botvault, not vault"),
    ("import cli.main", "import botvault.cli, not cli"),
])
def test_the_folders_do_not_import_under_their_own_names(statement: str, named: str) -> None:
    """One module, one copy: from the repository root, `vault/` would import as a second
    package whose errors `except botvault.errors.VaultError` does not catch."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", statement], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert f"ImportError: {named}" in done.stderr


def test_botvault_imports_from_the_repository_root() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import botvault.errors, botvault.cli.main, botvault.open_vault; "
         "print(botvault.errors.__name__)"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "botvault.errors"


MAX_MODULE_LINES = 450  # issue 19: a module a newcomer can read in one sitting


def test_no_module_is_over_450_lines() -> None:
    root = Path(__file__).resolve().parents[1]
    long = {str(p.relative_to(root)): n for folder in ("vault", "cli")
            for p in (root / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"split these modules along their concerns: {long}"

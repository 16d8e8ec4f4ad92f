"""No import cycle among botvault's modules (vault/ and cli/), read from the source with `ast`.

Every import counts, at module level or inside a function (a lazy import still ties the two
modules together); only those under `if TYPE_CHECKING:` are left out, as they never run.
`from PKG import NAME` counts as importing PKG.NAME when that is a module, else PKG.
Layers, low to high: records and rules (entries, grant_record, scopes, errors), the codec
and the files, the open vault (open_vault) and the operations on it (grant_ops, backups,
rekey), then the agent, the gateway and the CLI. A cycle means a record type or a rule sits
above what uses it: move it down, never hide the import in a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Cycles known and owned by another change, each removed from here when it is fixed (the
# last test fails while an entry here is no longer a cycle). None today.
KNOWN: set[frozenset[str]] = set()


def modules(repo: Path = REPO) -> dict[str, Path]:
    """Every module of the package by dotted name: vault/ is botvault, cli/ botvault.cli."""
    found: dict[str, Path] = {}
    for folder, package in (("vault", "botvault"), ("cli", "botvault.cli")):
        for path in sorted((repo / folder).rglob("*.py")):
            parts = list(path.relative_to(repo / folder).with_suffix("").parts)
            if folder == "vault" and parts[0] == "cli":
                continue  # the symlink vault/cli -> ../cli: the same files as cli/
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def absolute_module(node: ast.ImportFrom, package: str) -> str:
    """The module `from ... import` names, absolute, for code in `package`."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[:len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def imports_of(name: str, source: str, known: set[str], *, package: bool) -> set[str]:
    """The modules of `known` that module `name` imports (any depth, TYPE_CHECKING aside)."""
    base_package = name if package else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            module = absolute_module(node, base_package)
            for alias in node.names:
                if f"{module}.{alias.name}" in known:
                    found.add(f"{module}.{alias.name}")
                elif module in known:
                    found.add(module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    found.discard(name)
    return found


def graph(repo: Path = REPO) -> dict[str, set[str]]:
    mods = modules(repo)
    known = set(mods)
    return {name: imports_of(name, path.read_text(encoding="utf-8"), known,
                             package=path.name == "__init__.py")
            for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each as one cycle
    through them, so that a failure shows the path to break."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # recursion depth is the import depth: small
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return [_one_cycle(group, edges) for group in groups]


def _one_cycle(group: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A path a -> ... -> a inside `group` (breadth first from its smallest member)."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(edges[node] & group):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in {sorted(group)}")


def test_the_graph_sees_every_module_and_lazy_imports() -> None:
    edges = graph()
    assert {"botvault.open_vault", "botvault.codec", "botvault.cli.main",
            "botvault.agent.server", "botvault.nonces.counters"} <= set(edges)
    assert "botvault.grant_record" in edges["botvault.codec"]
    # A function-level import counts: backups.restore imports grant_ops when it runs.
    assert "botvault.grant_ops" in edges["botvault.backups"]


def test_a_cycle_is_found_lazy_or_not_and_type_checking_is_not(tmp_path: Path) -> None:
    for folder in ("vault", "cli"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "vault" / "a.py").write_text("from . import b\n")
    (tmp_path / "vault" / "b.py").write_text("def f():\n    from .c import x\n")
    (tmp_path / "vault" / "c.py").write_text("from .a import y\n")
    (tmp_path / "vault" / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .e import z\n")
    (tmp_path / "vault" / "e.py").write_text("from .d import w\n")
    assert cycles(graph(tmp_path)) == [["botvault.a", "botvault.b", "botvault.c", "botvault.a"]]


def test_no_import_cycle() -> None:
    found = [c for c in cycles(graph()) if frozenset(c) not in KNOWN]
    assert found == [], "import cycles (break each by moving what both need below both):\n" + \
        "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("known", sorted("+".join(sorted(c)) for c in KNOWN))
def test_every_known_cycle_is_still_one(known: str) -> None:
    assert frozenset(known.split("+")) in {frozenset(c) for c in cycles(graph())}, \
        f"{known} is no longer a cycle: remove it from KNOWN"


# The layers of docs/ARCHITECTURE.md, top-level names under botvault; a module imports from
# its own layer or below.
LAYERS: dict[int, tuple[str, ...]] = {
    6: ("cli", "gateway", "__main__"),
    5: ("agent", "session", "integrations", "doctor"),
    4: ("open_vault", "save_engine", "backups", "rekey", "grant_ops", "export",
        "grant_policy", "secret_fix", "restore_preview"),
    3: ("entry_rules", "entry_checks", "grant_checks", "handover_policy", "handover",
        "importers", "import_check", "key_variables", "kdf_choice", "new_vault",
        "trading_gate", "secret_paste"),
    2: ("vault_file", "seen_generations", "vault_path", "nonces", "request_lock", "audit",
        "manpage_install", "rate_limits", "trading_budget"),
    1: ("entries", "grant_record", "codec", "trading_policy"),
    0: ("errors", "scopes", "secret", "private", "crypto", "fileformat", "exchanges",
        "passphrase_policy", "passphrase_source", "secret_input", "did_you_mean", "data",
        "fast_json", "version", "_testing"),
}
_LAYER_OF = {name: level for level, names in LAYERS.items() for name in names}


def _layer(module: str) -> int:
    parts = module.split(".")
    return 0 if len(parts) == 1 else _LAYER_OF[parts[1]]


def test_every_module_has_a_layer() -> None:
    missing = {m.split(".")[1] for m in modules() if "." in m} - set(_LAYER_OF)
    assert missing == set(), f"add these to LAYERS and docs/ARCHITECTURE.md: {sorted(missing)}"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = sorted(f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
                    for m, deps in graph().items() for d in deps if _layer(d) > _layer(m))
    assert upward == []

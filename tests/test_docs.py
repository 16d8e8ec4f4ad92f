"""The documents hold together: links resolve, the README stays short, SECURITY.md's tests
exist, and every document the code cites is in the repository (or the sdist)."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 15_000  # bytes: a newcomer's page, read in a few minutes
DOCUMENTS = sorted([*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md"),
                    ROOT / "bench" / "README.md"])
CODE_FOLDERS = ("vault", "cli", "tests", "bench")

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text outside code blocks and code spans, where a link is a link."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def links(path: Path) -> list[str]:
    return [t for t in _LINK.findall(_prose(path.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto: are not ours


def test_the_documents_are_there() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCUMENTS}
    assert {"README.md", "SECURITY.md", "CHANGELOG.md", "CONTRIBUTING.md", "bench/README.md",
            "docs/commands.md", "docs/gateway.md", "docs/format.md",
            "docs/operations.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in links(document):
        where, _, anchor = target.partition("#")
        path = (document.parent / where).resolve() if where else document
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.name}")
    assert not broken, broken


def test_the_slug_is_githubs() -> None:
    assert slug("`run` and `env`") == "run-and-env"
    assert slug("Containing a bot: grant, gateway, sign-only agent") == (
        "containing-a-bot-grant-gateway-sign-only-agent")
    assert slug("The exchange's key form, mapped to flags") == (
        "the-exchanges-key-form-mapped-to-flags")


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [gone](missing.md) `[code](not-a-link.md)`\n"
                    "```\n[fenced](nor-this.md)\n```\n[web](https://example.com)\n")
    assert links(page) == ["#title", "missing.md"]
    assert anchors(page) == {"title"}


def test_readme_stays_short() -> None:
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes; move reference into docs/"


@cache
def _test_names(relative: str) -> frozenset[str]:
    tree = ast.parse((ROOT / relative).read_text())
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))


def security_references() -> list[tuple[str, str]]:
    """(file, test) for every `tests/FILE.py::TEST` in SECURITY.md; a `::TEST` that follows
    one names a test of the same file."""
    found = []
    current = None
    for match in re.finditer(r"(tests/[\w/]+\.py)?::(test_\w+)",
                             (ROOT / "SECURITY.md").read_text()):
        current = match.group(1) or current
        assert current is not None, f"::{match.group(2)} names no file before it"
        found.append((current, match.group(2)))
    return found


def test_every_test_security_md_names_exists() -> None:
    references = security_references()
    assert len(references) >= 80  # the promises name their tests; a parser that finds none fails
    missing = [f"{file}::{name}" for file, name in references
               if not (ROOT / file).is_file() or name not in _test_names(file)]
    assert not missing, missing


def test_every_promise_section_names_a_test() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    promises = text.split("## What is promised", 1)[1]
    sections = re.split(r"^### ", promises, flags=re.M)[1:]
    assert len(sections) >= 8
    for section in sections:
        assert "tests/" in section, section.splitlines()[0]


def _code_files() -> list[Path]:
    files = [p for folder in CODE_FOLDERS for p in (ROOT / folder).rglob("*.py")
             if "__pycache__" not in p.parts]
    return [p for p in files if p.resolve() != Path(__file__).resolve()]


def _comments_and_docstrings(text: str) -> list[str]:
    """What the code says about itself (not data such as another project's paths)."""
    said = [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            said.append(ast.get_docstring(node) or "")
    return said


def citation_problems(path: Path) -> tuple[int, list[str]]:
    text = path.read_text()
    problems = [f"{path.name}: 'DESIGN' names no file (cite the docs/ page)"
                for _ in re.finditer(r"\bDESIGN\b(?!\.md)", text)]
    cited = 0
    for said in _comments_and_docstrings(text):
        for match in re.finditer(r"(?<![\w/.])((?:docs|bench)/[\w./-]+\.md|[A-Z]+\.md)\b",
                                 said):
            cited += 1
            if not (ROOT / match.group(1)).is_file():
                problems.append(f"{path.name} cites {match.group(1)}: not found")
    return cited, problems


def test_every_document_the_code_cites_exists() -> None:
    files = _code_files()
    assert len(files) > 50
    cited = 0
    problems = []
    for path in files:
        count, found = citation_problems(path)
        cited += count
        problems += found
    assert cited >= 5
    assert not problems, problems


def test_a_citation_of_a_missing_document_is_caught(tmp_path: Path) -> None:
    code = tmp_path / "module.py"
    code.write_text('"""See DESIGN "Storage" and docs/nowhere.md."""\n'
                    '# SECURITY.md says why\nSOURCE = "docs/other-project.md"\n')
    cited, problems = citation_problems(code)
    assert cited == 2  # the docstring's page and SECURITY.md, not the string's data
    assert problems == ["module.py: 'DESIGN' names no file (cite the docs/ page)",
                        "module.py cites docs/nowhere.md: not found"]

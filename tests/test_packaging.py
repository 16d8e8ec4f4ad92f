"""The distribution: one import package, `botvault`, and nothing that could shadow it.

The wheel is built once per session from the working tree (pip, with build isolation, from the
package registry's setuptools) and inspected; it is then unpacked with `--target` and run from
there, under a directory that holds hostile `vault/` and `cli/` packages first on sys.path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(out), str(REPO)], check=True, capture_output=True)
    (built,) = out.glob("botvault-*.whl")
    return built


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_botvault_is_the_only_top_level_package(wheel: Path) -> None:
    tops = {name.split("/")[0] for name in _names(wheel)}
    info = {t for t in tops if t.endswith((".dist-info", ".data"))}
    assert tops - info == {"botvault"}
    with zipfile.ZipFile(wheel) as archive:
        for meta in [n for n in archive.namelist() if n.endswith(".dist-info/top_level.txt")]:
            assert archive.read(meta).decode().split() == ["botvault"]


def test_every_package_of_the_tree_ships_and_the_test_helper_does_not(wheel: Path) -> None:
    names = set(_names(wheel))
    expected = {"botvault/py.typed", "botvault/cli/py.typed", "botvault/data/wordlist.txt",
                "botvault/__main__.py", "botvault/cli/main.py"}
    for folder, prefix in ((REPO / "vault", "botvault"), (REPO / "cli", "botvault/cli")):
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder)
            if relative.parts[:1] in (("cli",), ("_testing",)):
                continue  # vault/cli is the symlink to cli/; _testing is test-only
            expected.add("/".join((prefix, *relative.parts, "__init__.py")))
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if "_testing" in n]
    assert not [n for n in names if n.startswith(("botvault/tests", "tests/"))]


def test_metadata_license_urls_and_version_from_one_place(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(meta).decode()
        licenses = [n for n in archive.namelist() if "/licenses/" in n or n.endswith("LICENSE")]
    assert "License-Expression: MIT" in text
    assert licenses
    assert "Project-URL: Changelog" in text and "Project-URL: Security" in text
    assert "Classifier: Programming Language :: Python :: 3.11" in text
    version = next(line.split(": ", 1)[1] for line in text.splitlines()
                   if line.startswith("Version: "))
    import botvault

    assert botvault.__version__ == version


def test_runs_from_the_wheel_under_hostile_vault_and_cli_packages(wheel: Path,
                                                                  tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True, capture_output=True)
    hostile = tmp_path / "project"
    for package in ("vault", "cli"):
        (hostile / package).mkdir(parents=True)
        (hostile / package / "__init__.py").write_text(
            "raise SystemExit('the user project package was imported')\n")
    (hostile / "cli" / "main.py").write_text("raise SystemExit('hostile cli.main')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hostile), str(target)])}
    code = ("import sys, botvault, botvault.cli.main\n"
            "from botvault import agent, Vault\n"
            "assert botvault.__file__.startswith(sys.argv[1]), botvault.__file__\n"
            "print(botvault.__version__)\n")
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=hostile, env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    # The command itself, started the way the console script starts it.
    result = subprocess.run([sys.executable, "-m", "botvault", "--version"], cwd=hostile,
                            env=env, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("botvault ")


def test_the_installed_command_ignores_hostile_packages(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("botvault")
    if not exe.exists():
        pytest.skip("no botvault console script next to this interpreter")
    for package in ("vault", "cli"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("raise SystemExit('hostile')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([str(exe), "--version"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("botvault ")

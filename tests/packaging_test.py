"""The built wheel is the whole package: every source file, every data file the code loads,
and a `wsm` that runs from it alone (no checkout on sys.path).

`pip install .` once shipped without `workspace_manager.envs.installers` (a hand-kept package
list), so every command failed. These tests build the wheel offline from a copy of the source
tree and compare it with the tree, so a forgotten subpackage, a folder without `__init__.py`
or a data file type that `[tool.setuptools.package-data]` does not name fails here first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Set

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "workspace_manager"
BUILD_INPUTS = ("pyproject.toml", "README.md", "setup.py", "setup.cfg", "MANIFEST.in", "LICENSE")

pytestmark = pytest.mark.skipif(
    not (ROOT / PACKAGE / "__init__.py").is_file(),
    reason="needs the source checkout (the tests were copied beside an installed wsm)",
)


def is_build_residue(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def source_files() -> Set[str]:
    """Every file of the package in the checkout, as wheel paths: tracked and new files when
    git knows the tree (editor and build residue ignored as .gitignore says), else all."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", PACKAGE],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        paths = [Path(p) for p in listed if (ROOT / p).is_file()]  # a deleted, unstaged file
    except (OSError, subprocess.CalledProcessError):
        paths = [p.relative_to(ROOT) for p in (ROOT / PACKAGE).rglob("*") if p.is_file()]
    return {p.as_posix() for p in paths if not is_build_residue(p)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built offline (no index, no build isolation) from a copy of the source tree, so
    the build's `build/` and `*.egg-info` never land in the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / PACKAGE, src / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    dist = tmp_path_factory.mktemp("dist")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(dist),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (built,) = dist.glob("*.whl")
    return built


def test_wheel_holds_every_file_of_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    shipped = {n for n in names if n.startswith(PACKAGE + "/") and not is_build_residue(Path(n))}
    expected = source_files()
    assert f"{PACKAGE}/schemas/workspace.schema.json" in expected  # the listing itself works
    missing = sorted(expected - shipped)
    assert not missing, (
        f"missing from the wheel: {missing} (a folder without __init__.py, or a data file type "
        "not named in [tool.setuptools.package-data] of pyproject.toml?)"
    )
    assert not sorted(shipped - expected), "the wheel holds files the checkout does not"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as zf:
        assert "wsm = workspace_manager.cli.main:main" in zf.read(entry_points).decode()


def test_every_module_imports_and_wsm_runs_from_the_wheel_alone(
    wheel: Path, tmp_path: Path
) -> None:
    """Unpacked (a pure wheel installs by unzipping), the package imports module by module
    and `wsm validate` (which loads the packaged schema) answers, from the wheel only: -I keeps
    the checkout and PYTHONPATH off sys.path, and the wheel goes in front of site-packages,
    where an editable install of the checkout may sit."""
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
    sample = ROOT / "sample_workspaces" / "teams" / "workspace.yaml"
    probe = f"""
import importlib, pkgutil, sys
sys.path.insert(0, {str(unpacked)!r})
import {PACKAGE}
assert {PACKAGE}.__file__.startswith({str(unpacked) + os.sep!r}), {PACKAGE}.__file__
for info in pkgutil.walk_packages({PACKAGE}.__path__, "{PACKAGE}."):
    module = importlib.import_module(info.name)
    assert module.__file__.startswith({str(unpacked) + os.sep!r}), module.__file__
from {PACKAGE}.cli.main import main
sys.argv = ["wsm", "validate", "-w", {str(sample)!r}]
main()
"""
    res = subprocess.run(
        [sys.executable, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr

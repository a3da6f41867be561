from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from e2e import WSM, WorkspaceDir  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """With WSM_TEST_EXPECT_INSTALLED=1 (.ci/run, against a wheel installed in a fresh
    virtualenv), refuse to run unless `workspace_manager` and the `wsm` the tests start both
    come from this interpreter's virtualenv, not from a checkout: a test run that silently
    used the source tree would prove nothing about the built artefact."""
    if os.environ.get("WSM_TEST_EXPECT_INSTALLED") != "1":
        return
    import workspace_manager

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    package = Path(workspace_manager.__file__).resolve().parent
    problems = []
    if sys.prefix == sys.base_prefix:
        problems.append(f"the tests run on {sys.executable}, not in a virtualenv")
    if package.parent != site:
        problems.append(f"workspace_manager imported from {package}, not from {site}")
    if Path(WSM).parent != Path(sys.executable).parent or not os.path.isfile(WSM):
        problems.append(f"the tests would start {WSM}, not {Path(sys.executable).parent}/wsm")
    if problems:
        raise pytest.UsageError("WSM_TEST_EXPECT_INSTALLED=1: " + "; ".join(problems))


@pytest.fixture
def ws(tmp_path: Path) -> WorkspaceDir:
    """A workspace folder with private runtime, state and cache dirs for one test."""
    return WorkspaceDir(tmp_path)

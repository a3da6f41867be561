from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from e2e import WorkspaceDir  # noqa: E402


@pytest.fixture
def ws(tmp_path: Path) -> WorkspaceDir:
    """A workspace folder with private runtime, state and cache dirs for one test."""
    return WorkspaceDir(tmp_path)

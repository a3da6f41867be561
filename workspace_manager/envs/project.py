"""A location's `environment: {project: PATH}`: which lock decides its environment.

A project is a folder with a ``pyproject.toml``. Its lock is, in this order:
- ``uv.lock`` beside it, or the ``uv.lock`` of the uv workspace it is a member of (the nearest
  folder above it holding a ``uv.lock`` and a ``pyproject.toml`` with ``[tool.uv.workspace]``,
  uv's own rule for finding a workspace root);
- a PEP 751 lock beside it: ``pylock.toml``, or a single ``pylock.<name>.toml``;
- none: the project is installed like a local path requirement (not reproducible).

Only the standard library: no TOML parser is needed to find the files (tomllib is 3.11+).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from workspace_manager.envs.errors import EnvBuildError

UV_LOCK = "uv.lock"
PYLOCK = "pylock.toml"
_WORKSPACE_TABLE = re.compile(r"^\s*\[\s*tool\s*\.\s*uv\s*\.\s*workspace\s*\]", re.MULTILINE)

#: What `ProjectSource.kind` can be, as `wsm env list` and the build's record show it.
KIND_UV_LOCK = "uv.lock"
KIND_PYLOCK = "pylock"
KIND_UNLOCKED = "project"


@dataclass(frozen=True)
class ProjectSource:
    """Where a project environment comes from.

    ``files`` are what the install reads besides the lock and so go into the env's key: for a
    uv lock, the project's ``pyproject.toml`` and, for a uv workspace member, the workspace
    root's (uv checks the lock against them); a pylock is read alone.
    """

    kind: str  # KIND_UV_LOCK | KIND_PYLOCK | KIND_UNLOCKED
    project: Path  # absolute folder holding pyproject.toml
    lock: Optional[Path]  # the lock file, None for KIND_UNLOCKED
    files: Tuple[Path, ...]

    @property
    def reproducible(self) -> bool:
        return self.lock is not None


def _is_uv_workspace_root(folder: Path) -> bool:
    try:
        text = (folder / "pyproject.toml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return _WORKSPACE_TABLE.search(text) is not None


def _pylock(project: Path) -> Optional[Path]:
    """PEP 751's names: ``pylock.toml``, or ``pylock.<name>.toml`` when there is exactly one."""
    plain = project / PYLOCK
    if plain.is_file():
        return plain
    named = sorted(p for p in project.glob("pylock.*.toml") if p.is_file())
    return named[0] if len(named) == 1 else None


def find_source(project: Path) -> ProjectSource:
    """The lock that decides ``project``'s environment (EnvBuildError without pyproject.toml)."""
    project = Path(project)
    pyproject = project / "pyproject.toml"
    if not pyproject.is_file():
        raise EnvBuildError(f"project {project} has no pyproject.toml")
    own = project / UV_LOCK
    if own.is_file():
        return ProjectSource(KIND_UV_LOCK, project, own, (pyproject,))
    for folder in project.parents:
        lock = folder / UV_LOCK
        if lock.is_file() and _is_uv_workspace_root(folder):
            return ProjectSource(
                KIND_UV_LOCK, project, lock, (pyproject, folder / "pyproject.toml")
            )
    pylock = _pylock(project)
    if pylock is not None:
        return ProjectSource(KIND_PYLOCK, project, pylock, ())  # the install reads the lock only
    return ProjectSource(KIND_UNLOCKED, project, None, (pyproject,))

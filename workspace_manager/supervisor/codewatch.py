"""Noticing that a broken location's code changed, so it is retried without a `wsm reload`.

A location in `error` is not restarted in a loop (restarting broken code does not help), nor
is one `failed` after too many crashes, but once someone edits its files either deserves
another try (SPEC section 4). Only locations in `error` or `failed` are watched, by polling a
bounded number of file stats: cheap, and no inotify.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

from workspace_manager.workspace.model import CodeTarget, LocationConfig

#: Folders never worth walking: environments, VCS data, caches.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".venv",
        "venv",
        "__pycache__",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        "build",
        "dist",
    }
)
#: At most this many files are looked at; a larger tree is fingerprinted by its first ones.
MAX_FILES = 5000

Fingerprint = Tuple[int, int]  # (newest mtime in ns, number of files)


def code_fingerprint(location: LocationConfig) -> Optional[Fingerprint]:
    """A value that changes when a Python file of the location's code is edited, added or
    removed; None for a remote location."""
    target = location.target
    if not isinstance(target, CodeTarget):
        return None
    newest, count = 0, 0
    paths = [str(target.python_file)] if target.python_file else []
    for path in paths:
        try:
            newest = max(newest, os.stat(path).st_mtime_ns)
            count += 1
        except OSError:
            pass
    for root, dirs, files in os.walk(str(target.working_directory)):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            if not name.endswith(".py"):
                continue
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime_ns)
            except OSError:
                continue
            count += 1
            if count >= MAX_FILES:
                return newest, count
    return newest, count

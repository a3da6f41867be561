"""Content hashes of local files and source trees that go into an environment's key.

A local package is hashed by its source files, skipping what building or running it
leaves behind (build/, dist/, *.egg-info, __pycache__, VCS folders), so `pip install ./pkg`
itself does not change the key of the env it went into.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SKIPPED_DIRS = frozenset(
    {
        "build",
        "dist",
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".nox",
        ".venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _skip_dir(name: str) -> bool:
    return name in SKIPPED_DIRS or name.endswith(".egg-info")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root: Path) -> str:
    """One hash over every kept file's relative path and contents, in a stable order."""
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skip_dir(d))
        for name in sorted(files):
            if name.endswith(SKIPPED_SUFFIXES):
                continue
            path = Path(folder) / name
            if not path.is_file():
                continue  # a dangling symlink or a socket: not part of the source
            rel = path.relative_to(root).as_posix()
            h.update(rel.encode() + b"\0" + file_digest(path).encode() + b"\n")
    return h.hexdigest()


def path_digest(path: Path) -> str:
    """Digest of a local requirement: a source tree, or a file (wheel, sdist, requirements)."""
    if path.is_dir():
        return "tree:" + tree_digest(path)
    if path.is_file():
        return "file:" + file_digest(path)
    return "missing"

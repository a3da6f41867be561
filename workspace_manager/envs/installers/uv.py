"""uv (``uv pip install --python <env python>``), when the ``uv`` executable is installed
beside wsm's interpreter (``pip install uv``) or on PATH; and the exact installs from a lock:
``uv sync --locked`` for a uv.lock, ``uv pip sync`` for a PEP 751 pylock.toml."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence

#: How uv's diagnostics begin (uv's own format: "error:", then "cause:" lines, older uv
#: "Caused by:", then "hint:"); `reason` joins them into one line.
DIAGNOSTIC_PREFIXES = ("error:", "cause:", "Caused by:", "hint:")


def reason(lines: Sequence[str]) -> Optional[str]:
    """uv's failure in one line: its first ``error:``, the innermost ``cause:`` (the one that
    names the file or package) and its first ``hint:``; None when uv printed no ``error:``."""
    error: Optional[str] = None
    cause: Optional[str] = None
    hint: Optional[str] = None
    for raw in lines:
        text = raw.strip()
        if text.startswith("error:") and error is None:
            error = text[len("error:") :].strip()
        elif error is not None and text.startswith(("cause:", "Caused by:")):
            cause = text.split(":", 1)[1].strip()
        elif error is not None and text.startswith("hint:") and hint is None:
            hint = text[len("hint:") :].strip()
    if error is None:
        return None
    line = error.rstrip(".") if cause or hint else error
    if cause:
        line += f": {cause}"
    if hint:
        line += f" ({hint.rstrip('.')})"
    return line


def find_uv() -> Optional[str]:
    """The uv executable: wsm's dependency beside its interpreter, else where the `uv` package
    says its binary is (a `--user` or `--target` install; uv's own `find_uv_bin`), else on PATH.

    Returns None when none is found (uv removed after wsm was installed)."""
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "uv")
    if os.access(beside, os.X_OK):
        return beside
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


class UvInstaller:
    name = "uv"

    def __init__(self) -> None:
        self._exe: Optional[str] = find_uv()

    def available(self) -> bool:
        return self._exe is not None

    def command(self, python: str, args: Sequence[str]) -> List[str]:
        assert self._exe is not None
        return [self._exe, "pip", "install", "--python", python, *args]

    def sync_command(
        self, python: str, project: Path, extras: Sequence[str], groups: Sequence[str]
    ) -> List[str]:
        """Install exactly what ``project``'s uv.lock locks for it into ``python``'s env.

        The caller sets UV_PROJECT_ENVIRONMENT to that env, so nothing lands in the project
        folder. ``--locked`` is ``--frozen`` (install from the lock, never re-resolve or rewrite
        it) plus uv's check that the lock still matches the pyproject.toml files: a stale lock
        is an error, not a silently different environment. Only the ``groups`` asked for are
        installed, not uv's default ``dev`` group (uv's docs: "Locking and syncing").
        """
        assert self._exe is not None
        argv = [self._exe, "sync", "--locked", "--project", str(project), "--python", python]
        argv += ["--no-default-groups", "--no-python-downloads", "--color", "never"]
        for extra in extras:
            argv += ["--extra", extra]
        for group in groups:
            argv += ["--group", group]
        return argv

    def pylock_command(
        self, python: str, lock: Path, extras: Sequence[str], groups: Sequence[str]
    ) -> List[str]:
        """Make ``python``'s env hold exactly the packages of a PEP 751 lock (``uv pip sync``
        removes anything else; a lock names every file with its hash)."""
        assert self._exe is not None
        argv = [self._exe, "pip", "sync", "--python", python, "--color", "never"]
        for extra in extras:
            argv += ["--extra", extra]
        for group in groups:
            argv += ["--group", group]
        return argv + [str(lock)]

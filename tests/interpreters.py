"""The interpreters a location may run on, for tests that run the loader or the SDK under each.

One list for every such test: wsm's own interpreter, and the bare ones this machine may have
(a separate Debian installation without wsm's dependencies, the oldest CPython the loader
supports, the newest one installed). A test parametrized with `params()` runs once per
interpreter and is skipped, with the reason, where the machine lacks one; `available()` gives
the paths that exist, for fixtures parametrized by path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest

import workspace_manager

WSM_PYTHON = sys.executable
DEBIAN_PYTHON = "/usr/bin/python3"  # a separate installation, without msgpack or psutil
PY39 = "/root/.pyenv/versions/3.9.18/bin/python"  # the oldest the loader side must import on
PY313 = "/root/.pyenv/versions/3.13.0/bin/python3"

#: label (the test id) -> path, wsm's own first
KNOWN = {
    "wsm-python": WSM_PYTHON,
    "debian-python3": DEBIAN_PYTHON,
    "python3.9": PY39,
    "python3.13": PY313,
}

#: the bare interpreters: none of wsm's dependencies importable
BARE = ("debian-python3", "python3.9")


def params(*labels: str) -> List[Any]:
    """`pytest.param(path, id=label)` for each label of KNOWN (all of them when none is
    given), each skipped with a reason where this machine has no executable at that path.

    Raises KeyError for a label not in KNOWN.
    """
    out = []
    for label in labels or tuple(KNOWN):
        path = KNOWN[label]
        out.append(
            pytest.param(
                path,
                id=label,
                marks=pytest.mark.skipif(not os.access(path, os.X_OK), reason=f"no {path}"),
            )
        )
    return out


def available(*labels: str) -> List[str]:
    """The paths of `labels` (all of KNOWN when none is given) that exist here, in order."""
    return [KNOWN[label] for label in labels or tuple(KNOWN) if os.access(KNOWN[label], os.X_OK)]


def run_isolated(python: str, code: str, folder: Path) -> str:
    """`code` run by `python -I -S` (no site-packages, no user site, no environment) with
    `folder` as its argv[1], where a `workspace_manager` symlink to this checkout's package
    is made: what the loader side imports under a bare interpreter. Its stdout; the test
    fails with its stderr if it exits non-zero."""
    link = folder / "workspace_manager"
    if not link.exists():
        link.symlink_to(Path(workspace_manager.__file__).resolve().parent)
    done = subprocess.run(
        [python, "-I", "-S", "-c", code, str(folder)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout

"""What activating a location's interpreter environment changes: `PATH` and `VIRTUAL_ENV`.

A location's process should find the command-line tools installed with its packages (dbt and
the like) and its own `python` first on `PATH`, as in an activated virtualenv (the `activate`
script of venv/virtualenv: `VIRTUAL_ENV=<root>`, `PATH=<root>/bin:$PATH`). Dagster fixed the
same gap for its code servers in 2025 (dagster-io/dagster#12549 is the original report).
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Iterable, List, Optional


def environment_root(interpreter: str) -> Optional[str]:
    """The virtualenv (or conda env) holding `interpreter`, or None for a bare interpreter.

    `interpreter` is used as given, never resolved: a venv's `bin/python` is a symlink to its
    base interpreter, and only the unresolved path tells which environment it belongs to.
    A virtualenv is recognised by its `pyvenv.cfg` (PEP 405), a conda env by `conda-meta/`.
    """
    bin_dir = os.path.dirname(os.path.abspath(interpreter))
    root = os.path.dirname(bin_dir)
    if os.path.basename(bin_dir) != "bin":
        return None
    if os.path.isfile(os.path.join(root, "pyvenv.cfg")):
        return root
    if os.path.isdir(os.path.join(root, "conda-meta")):
        return root
    return None


def own_bin_dir() -> Optional[str]:
    """The `bin/` of the virtualenv wsm itself runs in, or None when it runs on a bare Python."""
    if sys.prefix == sys.base_prefix:
        return None
    return os.path.join(sys.prefix, "bin")


def activation_vars(interpreter: str, path: Optional[str]) -> Dict[str, str]:
    """`PATH` (and `VIRTUAL_ENV` for a virtualenv) for a process running `interpreter`.

    `path` is the `PATH` the process would otherwise get. Returns the variables to set:
    the interpreter's environment `bin/` first; wsm's own virtualenv `bin/` removed unless it
    is that same environment (a location with no environment runs on wsm's interpreter, and
    then wsm's `bin/` is its own); every other entry kept in order.
    """
    root = environment_root(interpreter)
    own = own_bin_dir()
    entries: List[str] = [e for e in (path or "").split(os.pathsep) if e]
    result: Dict[str, str] = {}
    front: List[str] = []
    if root is not None:
        front.append(os.path.join(root, "bin"))
        if os.path.isfile(os.path.join(root, "pyvenv.cfg")):
            result["VIRTUAL_ENV"] = root
    drop = set(front)
    if own is not None and not _same_dir(own, front):
        drop.add(own)
    kept = [e for e in entries if not _same_dir(e, drop)]
    if path is not None or front:
        result["PATH"] = os.pathsep.join(front + kept)
    return result


def _same_dir(entry: str, folders: Iterable[str]) -> bool:
    """`entry` names one of `folders` (compared after normalising, not resolving, paths)."""
    norm = os.path.normpath(entry)
    return any(norm == os.path.normpath(f) for f in folders)

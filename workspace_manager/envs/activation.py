"""What activating a location's interpreter environment changes: `PATH`, and `VIRTUAL_ENV`
or `CONDA_PREFIX`.

A location's process should find the command-line tools installed with its packages (dbt and
the like) and its own `python` first on `PATH`, as in an activated virtualenv (the `activate`
script of venv/virtualenv: `VIRTUAL_ENV=<root>`, `PATH=<root>/bin:$PATH`). Dagster fixed the
same gap for its code servers in 2025 (dagster-io/dagster#12549 is the original report).

A conda environment (a prefix with `conda-meta/`: conda, mamba, micromamba, pixi's
`.pixi/envs/NAME`) gets what `conda activate PREFIX` exports besides the shell's prompt and
nesting level: `PATH=<prefix>/bin:$PATH`, `CONDA_PREFIX=<prefix>` and `CONDA_DEFAULT_ENV`
(conda's `_default_env`: the folder's name for an env inside an `envs/` folder, "base" for a
root install, else the full path). Not done: the shell scripts of
`<prefix>/etc/conda/activate.d/` (wsm starts no shell to source them) and the variables of
`conda env config vars`; a package that needs one (GDAL_DATA and the like) gets it from the
location's `env_vars`.
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


def conda_env_name(prefix: str) -> str:
    """`CONDA_DEFAULT_ENV` as `conda activate` sets it for ``prefix`` (conda's
    `activate._default_env`): "base" for a root install (it holds `condabin/`), the folder's
    name for a named env (inside an `envs/` folder), else the prefix's path."""
    if os.path.isdir(os.path.join(prefix, "condabin")):
        return "base"
    if os.path.basename(os.path.dirname(prefix)) == "envs":
        return os.path.basename(prefix)
    return prefix


def own_bin_dir() -> Optional[str]:
    """The `bin/` of the virtualenv wsm itself runs in, or None when it runs on a bare Python."""
    if sys.prefix == sys.base_prefix:
        return None
    return os.path.join(sys.prefix, "bin")


def activation_vars(interpreter: str, path: Optional[str]) -> Dict[str, str]:
    """`PATH` (and `VIRTUAL_ENV` for a virtualenv, `CONDA_PREFIX` and `CONDA_DEFAULT_ENV` for
    a conda environment) for a process running `interpreter`.

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
        else:
            result["CONDA_PREFIX"] = root
            result["CONDA_DEFAULT_ENV"] = conda_env_name(root)
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

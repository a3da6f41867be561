"""Which interpreter a location runs on: its `executable_path`, or wsm's own interpreter.

Locations with an `environment:` block get a built virtualenv (see `envs.build`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from workspace_manager.workspace.model import LocationConfig


class InterpreterError(Exception):
    """The location's interpreter cannot be used; the message is shown as its error."""


def own_interpreter() -> str:
    """wsm's interpreter as it runs: ``sys.executable`` is the real binary, never a pyenv shim
    (which would cost ~100 ms per start). Not resolved further: inside a virtualenv its
    ``bin/python`` link is what gives a location the venv's packages."""
    return os.path.abspath(sys.executable)


def dangling_link(path: str) -> Optional[str]:
    """Why ``path``, which does not exist, still names a file: it is a symlink (a virtualenv's
    `bin/python`) to an interpreter that is gone, as after `uv python uninstall`, `pyenv
    uninstall` or an upgrade of the system Python the virtualenv was made from. Returns the
    end of a one-line message ("links to X, which does not exist ..."), or None when ``path``
    is no symlink."""
    if not os.path.islink(path):
        return None
    reason = f"links to {os.path.realpath(path)}, which does not exist"
    if os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(path)), "pyvenv.cfg")):
        reason += (
            " (the interpreter its virtualenv was made from is gone: make the virtualenv "
            "again, e.g. `uv sync` or `python -m venv`)"
        )
    return reason


def check_executable(path: Path) -> str:
    if not path.exists():
        dangling = dangling_link(str(path))
        if dangling is not None:
            raise InterpreterError(f"executable_path {path} {dangling}")
        raise InterpreterError(f"executable_path {path} does not exist")
    if not os.access(path, os.X_OK) or path.is_dir():
        raise InterpreterError(f"executable_path {path} is not an executable file")
    return str(path)


def plain_interpreter(location: LocationConfig) -> str:
    """The interpreter of a location that needs no environment build."""
    if location.executable_path is not None:
        return check_executable(location.executable_path)
    return own_interpreter()

"""Which interpreter a location runs on: its `executable_path`, or wsm's own interpreter.

Locations with an `environment:` block get a built virtualenv (see `envs.build`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from workspace_manager.workspace.model import LocationConfig


class InterpreterError(Exception):
    """The location's interpreter cannot be used; the message is shown as its error."""


def own_interpreter() -> str:
    """wsm's interpreter as it runs: ``sys.executable`` is the real binary, never a pyenv shim
    (which would cost ~100 ms per start). Not resolved further: inside a virtualenv its
    ``bin/python`` link is what gives a location the venv's packages."""
    return os.path.abspath(sys.executable)


def check_executable(path: Path) -> str:
    if not path.exists():
        raise InterpreterError(f"executable_path {path} does not exist")
    if not os.access(path, os.X_OK) or path.is_dir():
        raise InterpreterError(f"executable_path {path} is not an executable file")
    return str(path)


def plain_interpreter(location: LocationConfig) -> str:
    """The interpreter of a location that needs no environment build."""
    if location.executable_path is not None:
        return check_executable(location.executable_path)
    return own_interpreter()

"""Import a location's code and find its repositories, as Dagster's loaders do."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import zlib
from types import ModuleType
from typing import List

from ..sdk.discovery import find_repositories
from ..sdk.repository import RepositoryDefinition
from .bootstrap import Target


def _prepend_path(*folders: str) -> None:
    for folder in reversed(folders):
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)


def _module_name_for(path: str) -> str:
    """A module name no user module will have, still recognisable in tracebacks."""
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    digest = f"{zlib.crc32(path.encode('utf-8', 'surrogateescape')):08x}"  # hashlib: ~1 MB
    return f"__wsm_file_{stem}_{digest}"


def import_file(path: str) -> ModuleType:
    path = os.path.abspath(path)
    name = _module_name_for(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so dataclasses, pickle and typing can find it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_target(target: Target) -> ModuleType:
    """chdir to the working directory, set up sys.path, import the file or module."""
    cwd = target.working_directory
    if target.kind == "python_file":
        assert target.python_file is not None
        path = os.path.abspath(os.path.join(cwd or os.getcwd(), target.python_file))
        folder = os.path.dirname(path)
        if cwd is None:
            cwd = folder
        os.chdir(cwd)
        if folder == cwd:
            _prepend_path(folder)
        else:
            _prepend_path(folder, cwd)
        return import_file(path)
    assert target.module_name is not None
    if cwd is None:
        cwd = os.getcwd()
    os.chdir(cwd)
    _prepend_path(cwd)
    return importlib.import_module(target.module_name)


def load_repositories(target: Target) -> List[RepositoryDefinition]:
    module = import_target(target)
    return find_repositories(module, target.attribute)

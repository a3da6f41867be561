"""Import a location's code and find its repositories, as Dagster's loaders do."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

# The functions importlib.util re-exports, taken where they live: importlib.util itself
# imports importlib.abc and typing on CPython 3.9 (docs/architecture.md, "What a location imports").
# `_find_spec(name, None)` is what `importlib.util.find_spec(name)` calls for a top-level
# name not yet imported.
try:
    from importlib._bootstrap import _find_spec, module_from_spec  # type: ignore[attr-defined]
    from importlib._bootstrap_external import spec_from_file_location
except ImportError:  # pragma: no cover - another implementation
    from importlib.util import find_spec as _util_find_spec
    from importlib.util import module_from_spec, spec_from_file_location

    def _find_spec(name, path):  # type: ignore[no-untyped-def]
        return _util_find_spec(name)


from ..sdk.discovery import find_repositories
from ..sdk.repository import RepositoryDefinition
from .bootstrap import Target

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import List, Optional


def _prepend_path(*folders: str) -> None:
    for folder in reversed(folders):
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)


#: Standard modules the loader side imports on first use rather than at start-up
#: (docs/architecture.md, "What a location imports"), and what they import: a file of such a
#: stem, imported under its name, would be imported in their place later (by a sensor's
#: context, a traceback, a tag). They are taken as the imported ones are (before the imports
#: were made lazy, the loader had imported them all when the file was loaded).
IMPORTED_ON_FIRST_USE = frozenset(
    """ast atexit contextlib copyreg ctypes datetime dis functools grp inspect json linecache
    logging opcode platform pwd re sre_compile sre_constants sre_parse string subprocess
    sysconfig textwrap token tokenize traceback typing uuid weakref zoneinfo""".split()
)


class ModuleNameClash(ImportError):
    """A `python_file`'s stem already names another module in this interpreter."""


def _same_file(a: Optional[str], b: str) -> bool:
    if not a:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _clash(name: str, path: str) -> Optional[str]:
    """What `name` already means in this interpreter if not the file `path`, else None."""
    existing = sys.modules.get(name)
    if existing is not None:
        where = getattr(existing, "__file__", None) or "built in"
        return f"the module {name} ({where}), already imported"
    if name in IMPORTED_ON_FIRST_USE:
        return f"the standard module {name}, which the loader imports"
    if "." in name:  # find_spec would import the parent package: a side effect, not a lookup
        return None
    try:
        spec = _find_spec(name, None)
    except (ImportError, ValueError):
        return None
    if spec is None or _same_file(spec.origin, path):
        return None
    return f"the module {name} ({spec.origin or 'a namespace package'})"


def _refuse_a_clash(path: str) -> None:
    """ModuleNameClash when the stem of `path` already names another module here."""
    name = os.path.splitext(os.path.basename(path))[0]
    existing = sys.modules.get(name)
    if existing is not None and _same_file(getattr(existing, "__file__", None), path):
        return  # this very file, imported before
    holder = _clash(name, path)
    if holder is not None:
        raise ModuleNameClash(
            f"cannot import {path} as module {name!r}: that name is already {holder}; "
            "rename the file"
        )


def import_file(path: str) -> ModuleType:
    """Import `path` under its own module name, its file stem, as Dagster does.

    Registered in sys.modules under that name, so pickle, multiprocessing's spawn and child
    processes (which import by name through sys.path) find what it defines, and tracebacks
    name the user's module. When the stem already means another module in this interpreter
    (`json.py`, `workspace_manager.py`, a package of that name earlier on sys.path), importing
    it would silently replace or shadow that module: ModuleNameClash instead.
    """
    path = os.path.abspath(path)
    name = os.path.splitext(os.path.basename(path))[0]
    existing = sys.modules.get(name)
    if existing is not None and _same_file(getattr(existing, "__file__", None), path):
        return existing
    spec = spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}: not a Python source file")
    _refuse_a_clash(path)
    module = module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def share_sdk_with_children() -> None:
    """Append the loader's SDK folder to PYTHONPATH, so a child Python of this location (a
    multiprocessing worker, `subprocess.run([sys.executable, ...])`) can import the user's
    module, and through it `workspace_manager`, as the loader did.

    Only when the SDK comes from the manager's SDK folder (`<runtime>/sdk/`, holding nothing
    but the `workspace_manager` link, see launch.make_sdk_dir): then no other package of wsm's
    environment leaks into the children. Appended, so the user's own PYTHONPATH entries win.
    """
    sdk_dir = os.path.dirname(os.path.dirname(os.path.abspath(_sdk_file())))
    if not os.path.islink(os.path.join(sdk_dir, "workspace_manager")):
        return
    entries = [e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    if sdk_dir not in entries:
        os.environ["PYTHONPATH"] = os.pathsep.join(entries + [sdk_dir])


def _sdk_file() -> str:
    import workspace_manager

    return str(workspace_manager.__file__)


def import_target(target: Target) -> ModuleType:
    """chdir to the working directory, set up sys.path, import the file or module."""
    share_sdk_with_children()
    cwd = target.working_directory
    if target.kind == "python_file":
        assert target.python_file is not None
        path = os.path.abspath(os.path.join(cwd or os.getcwd(), target.python_file))
        folder = os.path.dirname(path)
        # a clash is refused before the file's folder is on sys.path: reporting it imports
        # traceback, and with it `re` and others, which must not find the user's `re.py`
        _refuse_a_clash(path)
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

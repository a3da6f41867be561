"""workspace.yaml (or `-f` / `-m` on the command line) -> Workspace, or every problem at once.

The steps: read the file, YAML with positions, JSON Schema (both skipped for a text that
passed before: validation_cache.py keeps its parsed document), then semantic checks that
also build the model. Any problem anywhere raises one WorkspaceError listing them all.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional, Union

from .errors import Problem, WorkspaceError
from .model import CodeTarget, LocationConfig, Supervision, Workspace
from .names import name_problem
from .schema import Issue, schema_issues, workspace_schema
from .semantic import Builder, derived_location_name
from .validation_cache import cached_document, cached_schema_issues

PathLike = Union[str, "os.PathLike[str]"]


def _read_text(path: PathLike, shown: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise WorkspaceError([Problem(shown, None, None, "no such file")]) from None
    except IsADirectoryError:
        raise WorkspaceError([Problem(shown, None, None, "is a folder, not a file")]) from None
    except OSError as error:
        message = f"cannot read it: {error.strerror or error}"
        raise WorkspaceError([Problem(shown, None, None, message)]) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        message = f"not UTF-8 text (bad byte at offset {error.start})"
        raise WorkspaceError([Problem(shown, None, None, message)]) from None


def load_workspace(path: PathLike) -> Workspace:
    """Load and fully check a workspace file.

    Problems name the file as the caller wrote it (`workspace.yaml:3:5: ...`), like a
    compiler; the model's paths are absolute and resolved.
    """
    shown = os.fspath(path)
    try:
        return _load(path, shown)
    except RecursionError:
        # yaml_positions bounds nesting; this is the last line that keeps a traceback away.
        message = "the file is nested too deeply to check"
        raise WorkspaceError([Problem(shown, 1, 1, message)]) from None


def _load(path: PathLike, shown: str) -> Workspace:
    text = _read_text(path, shown)
    doc = cached_document(text, shown)
    problems: List[Problem] = []
    issues: List[Issue] = []
    if doc is None:
        # imported here: PyYAML (~25 ms) is for a text not seen passing before
        from .yaml_positions import load_yaml

        doc, problems = load_yaml(text, shown)
        if doc is None:
            raise WorkspaceError(problems)
        if doc.empty:
            message = "the file is empty; it needs a load_from list of locations"
            raise WorkspaceError([Problem(shown, 1, 1, message)])
        issues = cached_schema_issues(text, doc, schema_issues, keep_document=not problems)
        problems.extend(issue.problem for issue in issues)
    if not isinstance(doc.data, dict):
        raise WorkspaceError(problems)
    folder = Path(os.path.abspath(shown)).parent
    builder = Builder(doc, folder)
    supervision, locations = builder.build([issue.path for issue in issues])
    daemon = builder.daemon([issue.path for issue in issues])
    problems.extend(builder.problems)
    if problems:
        raise WorkspaceError(problems)
    root = Path(os.path.realpath(folder))
    return Workspace(
        path=root / Path(shown).name,
        root=root,
        locations=tuple(locations),
        supervision=supervision,
        daemon=daemon,
        warnings=tuple(str(w) for w in sorted(builder.warnings, key=lambda w: w.sort_key())),
    )


def adhoc_workspace(
    python_file: Optional[PathLike] = None,
    module_name: Optional[str] = None,
    attribute: Optional[str] = None,
    working_directory: Optional[PathLike] = None,
) -> Workspace:
    """A one-location workspace for `wsm up -f FILE` / `-m MODULE`, named as workspace.yaml
    would name it. Relative paths are relative to the current directory."""
    if (python_file is None) == (module_name is None):
        raise ValueError("give exactly one of python_file and module_name")
    problems: List[Problem] = []
    cwd = Path.cwd()
    file_path: Optional[Path] = None
    wd: Optional[Path] = None
    if python_file is not None:
        shown = os.fspath(python_file)
        name = derived_location_name("python_file", shown)
        candidate = Path(os.path.realpath(cwd / shown))
        if not candidate.exists():
            problems.append(Problem(shown, None, None, "no such file"))
        elif not candidate.is_file():
            problems.append(Problem(shown, None, None, "is not a file"))
        else:
            file_path = candidate
            wd = candidate.parent
    else:
        assert module_name is not None
        name = derived_location_name("python_module", module_name)
        pattern = workspace_schema()["$defs"]["moduleName"]["pattern"]
        if not re.match(pattern, module_name):
            message = "not a Python module name (dotted names like team_b.definitions)"
            problems.append(Problem(module_name, None, None, message))
        wd = Path(os.path.realpath(cwd))
    unsafe = name_problem(name)
    if unsafe is not None and not problems:
        what = os.fspath(python_file) if python_file is not None else str(module_name)
        problems.append(Problem(what, None, None, f"location name {name!r} {unsafe}"))
    if working_directory is not None:
        shown_wd = os.fspath(working_directory)
        wd = Path(os.path.realpath(cwd / shown_wd))
        if not wd.is_dir():
            problems.append(Problem(shown_wd, None, None, "no such folder"))
    if problems:
        raise WorkspaceError(problems)
    assert wd is not None
    kind = "python_file" if file_path is not None else "python_module"
    location = LocationConfig(
        name=name,
        target=CodeTarget(
            kind=kind,
            working_directory=wd,
            python_file=file_path,
            module_name=module_name,
            attribute=attribute,
        ),
        supervision=Supervision(),
    )
    return Workspace(path=None, root=Path(os.path.realpath(cwd)), locations=(location,))

"""Whether an `environment.python` version spec ("3.11") finds an interpreter.

Uses the environment cache's own discovery and cache (`envs.interpreters`), so `wsm validate`
finds exactly the interpreter `wsm up` would build from, and a warm cache answers without
starting a process (a spec is looked up once per PATH). Whether an interpreter given by path
is a usable Python is checked when the location starts (it can change after validation).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Optional

# "3.11", "py3", "cpython3.12", "pypy3.10-64", ">=3.10": a version, not a command name.
_VERSIONISH = re.compile(r"^(?:[A-Za-z]*\d|[<>=!~])")

# python-discovery logs a warning per interpreter too old to query (e.g. a pyenv 2.7); with
# no handler configured, Python's last-resort handler would print each on stderr, in the
# middle of `wsm validate`'s one line per problem. They still reach any configured handler.
logging.getLogger("python_discovery").addHandler(logging.NullHandler())


class InterpreterChecker:
    """One per workspace load: opens the on-disk cache at most once."""

    def __init__(self) -> None:
        self._cache: Any = None

    def _interpreters(self) -> Any:
        if self._cache is None:
            # Imported here: envs imports the workspace model, not the other way round.
            from workspace_manager.envs.interpreters import InterpreterCache
            from workspace_manager.envs.paths import CacheLayout

            self._cache = InterpreterCache(CacheLayout.at())
        return self._cache

    def spec_problem(self, spec: str) -> Optional[str]:
        """None when virtualenv's discovery finds an interpreter for `spec`, else why not."""
        from workspace_manager.envs.errors import EnvBuildError

        missing = _missing_command(spec)
        if missing is not None:
            return missing
        try:
            self._interpreters().find(spec)
        except EnvBuildError as error:
            return error.reason.removeprefix("python: ")
        except OSError:
            return None  # the cache cannot be written (a read-only home): `wsm up` will say
        return None


def _missing_command(spec: str) -> Optional[str]:
    """A spec that is no version ("3.11", "cpython3.12", ">=3.10") but a command name must
    be a command on PATH (or among pyenv's and uv's interpreters). Checked here first because
    python-discovery, not finding such a name, asks every interpreter it can see (20 s here)."""
    import shutil

    from python_discovery import PythonSpec

    from workspace_manager.envs.interpreters import managed_python_dirs

    text = spec.strip()
    if os.sep in text or text.startswith("~") or _VERSIONISH.match(text):
        return None  # a path, or a version: python-discovery's own lookup is quick
    try:
        parsed = PythonSpec.from_string_spec(text)
    except Exception:  # a spec python-discovery cannot parse: let find() say why
        return None
    if parsed.path is None:
        return None
    search = os.pathsep.join([os.environ.get("PATH", ""), *managed_python_dirs()])
    if shutil.which(text, path=search) is not None:
        return None
    return (
        f'no interpreter matching {spec!r}: not a version (such as "3.11" or "cpython3.12") '
        "and no command of that name on PATH or in pyenv/uv's versions"
    )

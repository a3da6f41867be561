"""Whether an `environment.python` version spec ("3.11") finds an interpreter.

Uses the environment cache's own discovery and cache (`envs.interpreters`), so `wsm validate`
finds exactly the interpreter `wsm up` would build from, and a warm cache answers without
starting a process (a spec is looked up once per PATH). Whether an interpreter given by path
is a usable Python is checked when the location starts (it can change after validation).
"""

from __future__ import annotations

from typing import Any, Optional


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

        try:
            self._interpreters().find(spec)
        except EnvBuildError as error:
            return error.reason.removeprefix("python: ")
        return None

"""What the manager calls: the interpreter for a location, reusing or building its env.

`cached()` answers from disk without building (a warm start asks no process); `ensure()`
builds what is missing in worker threads, at most `max_parallel` at once, and locations
with the same key within this process share one build.

With ``frozen`` (`wsm up --frozen-envs`, envs/frozen.py) nothing is built and nothing is
written to the cache, which may be read-only; a missing env is its location's error. What
a manager would write there otherwise:
- build locks, build folders, logs: none, nothing is built;
- last-used stamps and user records: skipped (`mark_used` says why);
- interpreter identities and python_discovery's answers: kept in memory for this process
  (`InterpreterCache(writable=False)`); the build step's `interpreters.json` is still read;
- the keys a manager uses: in its runtime dir, as always (`envs.inuse.write_in_use`).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Tuple

from workspace_manager.envs import frozen as frozen_envs
from workspace_manager.envs import installers, store
from workspace_manager.envs.cancel import Cancel
from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.interpreters import InterpreterCache
from workspace_manager.envs.key import EnvRecipe, base_dir, make_recipe
from workspace_manager.envs.paths import CacheLayout
from workspace_manager.envs.progress import BuildReporter, NullReporter
from workspace_manager.envs.resolve import plain_interpreter
from workspace_manager.workspace.model import LocationConfig


@dataclass(frozen=True)
class ResolvedEnv:
    python: str  # interpreter to start the location with
    key: str  # env key; "" for a location without `environment`
    built: bool  # this call (or a build it joined) built the env
    seconds: float


class EnvironmentService:
    def __init__(
        self,
        cache_dir: Optional[Path] = None,
        reporter: Optional[BuildReporter] = None,
        max_parallel: Optional[int] = None,
        frozen: bool = False,
        identity: Optional[str] = None,
    ) -> None:
        """``frozen``: never build and never write to the cache (`--frozen-envs`);
        ``identity``: the manager's (cli/targets.identity), named in the `wsm env build`
        command a missing env's error gives."""
        self.layout = CacheLayout.at(cache_dir)
        self.reporter: BuildReporter = reporter or NullReporter()
        self.frozen = frozen
        self.identity = identity
        self.interpreters = InterpreterCache(self.layout, writable=not frozen)
        self._pool = ThreadPoolExecutor(
            max_workers=max_parallel or os.cpu_count() or 1, thread_name_prefix="wsm-env-build"
        )
        self._inflight: Dict[str, asyncio.Future[bool]] = {}
        self._joined: Dict[str, List[str]] = {}
        self._cancel = Cancel()
        #: Variables kept from installers (wsm's own tokens); the manager sets them.
        self.hidden_env: FrozenSet[str] = frozenset()

    def recipe(self, location: LocationConfig) -> EnvRecipe:
        """The env key and build recipe of a location with `environment` (EnvBuildError)."""
        spec = location.environment
        if spec is None:
            raise ValueError(f"location {location.name} has no environment")
        interpreter = self.interpreters.find(spec.python, base_dir(location))
        installer, _warning = installers.choose(spec.installer)
        return make_recipe(
            location,
            spec,
            interpreter,
            installer.name,
            lock_parts=self.layout.lock_parts,
            lock_parts_writable=not self.frozen,
        )

    def key(self, location: LocationConfig) -> Optional[str]:
        return None if location.environment is None else self.recipe(location).key

    def cached(self, location: LocationConfig) -> Optional[str]:
        """The interpreter path when nothing needs building, else None. Never builds."""
        return self.lookup(location)[0]

    def lookup(self, location: LocationConfig) -> Tuple[Optional[str], str]:
        """(interpreter path or None when a build is needed, env key or ""), computing the
        key once: hashing local requirement trees is the costly part of a warm start."""
        if location.environment is None:
            try:
                return plain_interpreter(location), ""
            except Exception:
                return None, ""
        try:
            key = self.recipe(location).key
        except EnvBuildError:
            return None, ""
        if self.layout.is_complete(key):
            return str(self.layout.python(key)), key
        if self.frozen:
            raise frozen_envs.missing_env(self.layout, key, self.identity, location.name)
        return None, key

    async def ensure(self, location: LocationConfig) -> ResolvedEnv:
        """The interpreter for ``location``, building its env first when needed."""
        started = time.monotonic()
        if location.environment is None:
            return ResolvedEnv(plain_interpreter(location), "", False, 0.0)
        loop = asyncio.get_running_loop()
        recipe = await loop.run_in_executor(None, self.recipe, location)
        key = recipe.key
        if self.layout.is_complete(key):
            return ResolvedEnv(str(self.layout.python(key)), key, False, time.monotonic() - started)
        if self.frozen:
            raise frozen_envs.missing_env(self.layout, key, self.identity, location.name)
        future = self._inflight.get(key)
        if future is None:
            why = frozen_envs.cache_unwritable(self.layout)
            if why is not None:
                raise frozen_envs.unwritable_cache(
                    self.layout, key, self.identity, location.name, why
                )
            from workspace_manager.envs.build import build_env  # filelock, guard: for builds only

            names = self._joined[key] = [location.name]
            installer, warning = installers.choose(location.environment.installer)
            future = loop.run_in_executor(
                self._pool,
                functools.partial(build_env, hidden_env=self.hidden_env),
                recipe,
                self.layout,
                installer,
                self.reporter,
                names,
                warning,
                self._cancel,
            )
            self._inflight[key] = future
            future.add_done_callback(lambda _f: self._forget(key))
        else:
            self._joined[key].append(location.name)
        built = await asyncio.shield(future)
        return ResolvedEnv(str(self.layout.python(key)), key, built, time.monotonic() - started)

    def _forget(self, key: str) -> None:
        self._inflight.pop(key, None)
        self._joined.pop(key, None)

    def mark_used(self, key: str, workspace: str, location: str) -> None:
        """Record that ``location`` of ``workspace`` uses env ``key`` now (for list/prune).

        Skipped, not moved elsewhere, when ``frozen`` or when the cache is read-only: the
        record's last-used stamp serves `wsm env prune --unused-days`, which has nothing to
        do on a cache no one may change, and its users were recorded by the `wsm env build`
        that made the env. What a running manager uses is still published, in its runtime
        dir (`envs.inuse.write_in_use`), so `wsm env list` shows it running and `prune` keeps it.
        """
        if not key or self.frozen:
            return
        try:
            store.record_use(self.layout, key, workspace, location)
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise

    def close(self, cancel_builds: bool = False) -> None:
        """Release the build threads; with ``cancel_builds`` (shutdown), stop running installs
        too: their envs are not published and are cleaned up by the next build."""
        if cancel_builds:
            self._cancel.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

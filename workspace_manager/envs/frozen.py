"""Environments built ahead of time: `wsm env build` in an image's build step, then
`wsm up --frozen-envs` at run time, on a cache that may be read-only.

Under ``--frozen-envs`` an environment that is not in the cache, complete, under the key the
location's inputs give now, is that location's `error`, never a build: the message says which
`wsm env build` makes it. The same command is named when a manager without the flag finds the
cache read-only and the environment missing.
"""

from __future__ import annotations

import errno
import os
import shlex
from typing import Optional

from workspace_manager.envs import store
from workspace_manager.envs.errors import EnvBuildError
from workspace_manager.envs.paths import CacheLayout


class FrozenEnvMissing(EnvBuildError):
    """A location's environment is not built, and nothing may build it here."""


def build_command(identity: Optional[str], location: str) -> str:
    """The `wsm env build` that makes ``location``'s environment, for the manager whose
    identity is ``identity`` (cli/targets.identity: ``workspace:PATH``, ``file:PATH#ATTR``
    or ``module:MOD#ATTR@CWD``); without one, the workspace is left for the reader to give."""
    kind, _, rest = (identity or "").partition(":")
    if kind == "workspace" and rest:
        target = f"-w {shlex.quote(rest)}"
    elif kind == "file" and rest:
        path, _, attr = rest.partition("#")
        target = f"-f {shlex.quote(path)}" + (f" -a {shlex.quote(attr)}" if attr else "")
    elif kind == "module" and rest:
        module, _, tail = rest.partition("#")
        attr, _, cwd = tail.partition("@")
        target = f"-m {shlex.quote(module)}" + (f" -a {shlex.quote(attr)}" if attr else "")
        if cwd:
            return f"cd {shlex.quote(cwd)} && wsm env build {target} {shlex.quote(location)}"
    else:
        target = "-w FILE"
    return f"wsm env build {target} {shlex.quote(location)}"


def missing_env(
    layout: CacheLayout, key: str, identity: Optional[str], location: str
) -> FrozenEnvMissing:
    """The error of a location whose env ``key`` is not usable under ``--frozen-envs``: not
    built, incomplete, or built for inputs that changed since (its lock, its project files,
    its interpreter: then the cache holds another key for the same location). Reads only."""
    command = build_command(identity, location)
    link = layout.env(key)
    if os.path.lexists(link):
        what = f"its environment {key} in {layout.envs} is incomplete"
    else:
        older = _built_before(layout, key, identity, location)
        what = f"its environment {key} is not built"
        if older:
            what += (
                f" (the cache holds {older}, built for it before its lock, project files "
                "or interpreter changed)"
            )
    return FrozenEnvMissing(
        f"{what}, and --frozen-envs never builds: run `{command}` where the cache is "
        "writable (an image's build step)",
        key=key,
    )


def unwritable_cache(
    layout: CacheLayout, key: str, identity: Optional[str], location: str, why: str
) -> EnvBuildError:
    """The error of a location whose env must be built on a cache that cannot be written
    (``why``: `cache_unwritable`'s answer)."""
    return EnvBuildError(
        f"its environment {key} is not built and cannot be built here: the environment "
        f"cache cannot be written: {layout.root}: {why}; build it where the cache is "
        f"writable (`{build_command(identity, location)}`, in an image's build step) and "
        "start with `wsm up --frozen-envs`",
        key=key,
    )


def cache_unwritable(layout: CacheLayout) -> Optional[str]:
    """Why wsm may not write to the cache (strerror's words), or None when it may. The
    nearest folder that exists stands for a cache not made yet. A read-only mount is
    asked of statvfs(2) (ST_RDONLY); mode bits of access(2), which do not stop root."""
    probe = layout.root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS)
    except OSError:
        return None  # let the build meet the real error
    if not os.access(probe, os.W_OK):
        return os.strerror(errno.EACCES)
    return None


def _built_before(
    layout: CacheLayout, key: str, identity: Optional[str], location: str
) -> Optional[str]:
    """Another env recorded as used by this workspace's ``location`` (by `wsm env build`)."""
    if identity is None:
        return None
    for entry in store.entries(layout):
        if entry.key != key and entry.complete and (identity, location) in entry.users:
            return entry.key
    return None

"""One file lock per environment key: two processes building the same env build it once."""

from __future__ import annotations

from typing import Optional

import filelock

from workspace_manager.envs.paths import CacheLayout


def key_lock(layout: CacheLayout, key: str, timeout: float = -1) -> filelock.FileLock:
    """A lock usable from any thread (not thread-local) on ``<envs>/.locks/<key>.lock``."""
    layout.private(layout.locks)
    return filelock.FileLock(str(layout.lock(key)), timeout=timeout, mode=0o600, thread_local=False)


def try_lock(layout: CacheLayout, key: str) -> Optional[filelock.FileLock]:
    """The key's lock if it is free now, else None (someone is building that env)."""
    lock = key_lock(layout, key, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        return None
    return lock

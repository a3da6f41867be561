"""The state folders: one per workspace or `-f`/`-m` target under the state root (its logs),
and pruning the ones nobody will read again.

Each manager writes ``target.json`` (its identity) into its folder when it starts, so a
later prune can tell what the folder belongs to. A folder is pruned when all of these hold:

- no manager holds it: its runtime dir's ``manager.lock`` is free (taken shared for the
  whole removal, so no manager can start on that folder meanwhile) and no live manager
  record names it;
- what it belongs to is gone: the workspace file or Python file no longer exists, the
  working directory of a `-m` run no longer exists, or it is a one-shot `wsm list`;
- nothing in it changed for ``older_than`` seconds.

A folder without ``target.json`` (made by an older wsm) is kept: what it
belongs to cannot be told. ``include_unknown`` (`wsm state prune --include-unknown`) removes
those too, by the lock and age rules alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

from workspace_manager.supervisor import runtime
from workspace_manager.supervisor.logs import state_root

TARGET_NAME = "target.json"
#: `wsm up` prunes folders untouched for this long (the default of `wsm state prune` too).
DEFAULT_OLDER_THAN = 7 * 86400.0


@dataclass(frozen=True)
class StateDir:
    path: Path
    identity: Optional[str]  # None: no target.json (an older wsm made it)
    last_change: float  # newest mtime inside, unix time


def claim(key: str, identity: str) -> None:
    """Record which target the state folder of manager `key` belongs to (best effort: a
    folder that cannot be written only loses its logs later, never the manager)."""
    folder = state_root() / key
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = folder / (TARGET_NAME + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"identity": identity}, f)
        os.replace(tmp, folder / TARGET_NAME)
    except OSError:
        pass


def state_dirs() -> Iterator[StateDir]:
    """Every state folder under the state root."""
    root = state_root()
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            identity = json.loads((entry / TARGET_NAME).read_text())["identity"]
            if not isinstance(identity, str):
                identity = None
        except (OSError, ValueError, KeyError, TypeError):
            identity = None
        yield StateDir(entry, identity, _last_change(entry))


def target_gone(identity: str) -> bool:
    """True when what `identity` names no longer exists (a `wsm list` run is over at once)."""
    target = runtime.identity_target(identity)
    if "list" in target:
        return True
    path = target.get("workspace") or target.get("python_file") or target.get("working_directory")
    if not path:
        return False
    return not os.path.exists(path)


def prune(
    older_than: float = DEFAULT_OLDER_THAN, dry_run: bool = False, include_unknown: bool = False
) -> List[StateDir]:
    """Remove the state folders nobody uses (rules in the module docstring); returns them.
    `older_than` is in seconds."""
    removed = []
    now = time.time()
    for sd in state_dirs():
        if now - sd.last_change < older_than:
            continue
        if sd.identity is None and not include_unknown:
            continue
        if sd.identity is not None and not target_gone(sd.identity):
            continue
        if _remove_unless_held(sd, dry_run):
            removed.append(sd)
    return removed


def _remove_unless_held(sd: StateDir, dry_run: bool) -> bool:
    key = sd.path.name
    run_dir = runtime.manager_dir(key)
    fd = None
    try:
        if run_dir.is_dir():
            fd = os.open(run_dir / "manager.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                # shared: fails while a manager holds it, and keeps one from starting
                # on this folder until the removal is done
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return False
        if runtime.find_manager(key) is not None:
            return False
        if not dry_run:
            shutil.rmtree(sd.path, ignore_errors=True)
        return True
    except OSError:
        return False
    finally:
        if fd is not None:
            os.close(fd)


def _last_change(folder: Path) -> float:
    newest = 0.0
    for root, _dirs, files in os.walk(folder):
        for name in [".", *files]:
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:
                continue
    return newest

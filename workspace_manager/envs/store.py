"""The environments on disk: publishing a finished build, reading its record, usage, cleanup.

A build lives in ``.builds/<key>.<pid>.<random>``; it is published by atomically replacing
the symlink ``envs/<key>`` with one pointing at it, after its marker (``wsm-env.json``)
was written. Readers only ever look through the published name, so an unfinished or
failed build is never seen. Build folders nothing points at are garbage once their
builder is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from workspace_manager.envs.paths import MARKER, CacheLayout
from workspace_manager.private_files import write_private


def new_build_dir(layout: CacheLayout, key: str) -> Path:
    layout.private(layout.envs)
    layout.private(layout.builds)
    return layout.builds / f"{key}.{os.getpid()}.{os.urandom(4).hex()}"


def _parse_build_name(name: str) -> Optional[tuple]:
    parts = name.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json_atomic(path: Path, data: Any) -> None:
    write_private(path, json.dumps(data, indent=1, sort_keys=True))


def publish(layout: CacheLayout, key: str, build_dir: Path, marker: Dict[str, Any]) -> None:
    """Mark ``build_dir`` complete, then make ``envs/<key>`` point at it, atomically."""
    write_json_atomic(build_dir / MARKER, marker)
    link = layout.env(key)
    tmp = layout.envs / f".{key}.link-{os.getpid()}-{os.urandom(3).hex()}"
    os.symlink(os.path.relpath(build_dir, layout.envs), tmp)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link, ignore_errors=True)  # not ours: a published name is a symlink
    os.replace(tmp, link)


def published_targets(layout: CacheLayout) -> Dict[str, str]:
    """Real build folder name -> key, for every published env."""
    out: Dict[str, str] = {}
    if not layout.envs.is_dir():
        return out
    for entry in os.scandir(layout.envs):
        if entry.name.startswith(".") or not entry.is_symlink():
            continue
        out[os.path.basename(os.readlink(entry.path))] = entry.name
    return out


def clean_stale_builds(layout: CacheLayout, holding_key: Optional[str] = None) -> List[Path]:
    """Remove build folders nothing publishes whose builder is dead; with ``holding_key``
    (whose lock the caller holds) also that key's unpublished ones, whoever made them."""
    removed: List[Path] = []
    if not layout.builds.is_dir():
        return removed
    published = published_targets(layout)
    for entry in os.scandir(layout.builds):
        if entry.name in published:
            continue
        parsed = _parse_build_name(entry.name)
        if parsed is None:
            continue
        key, pid = parsed
        if key == holding_key or not _pid_alive(pid):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def read_marker(layout: CacheLayout, key: str) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads(layout.marker(key).read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def dir_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def record_use(layout: CacheLayout, key: str, workspace: str, location: str) -> None:
    """Last-used time and who uses the env; concurrent writers may lose an entry, never data."""
    from workspace_manager.envs.lock import key_lock

    layout.private(layout.usage)
    path = layout.usage_file(key)
    with key_lock(layout, f"{key}.usage", timeout=10):
        data = read_usage(layout, key)
        now = time.time()
        data["last_used"] = now
        users = data.setdefault("users", {})
        users[f"{workspace}\0{location}"] = now
        write_json_atomic(path, data)


def read_usage(layout: CacheLayout, key: str) -> Dict[str, Any]:
    try:
        data = json.loads(layout.usage_file(key).read_text())
        if isinstance(data, dict) and isinstance(data.get("users", {}), dict):
            return data
    except (OSError, ValueError):
        pass
    return {}


@dataclass(frozen=True)
class EnvEntry:
    key: str
    complete: bool
    marker: Dict[str, Any]
    usage: Dict[str, Any]

    @property
    def last_used(self) -> float:
        return float(self.usage.get("last_used") or self.marker.get("created") or 0.0)

    @property
    def users(self) -> List[tuple]:
        """(workspace, location) pairs that used this env."""
        return [(workspace, location) for workspace, location, _at in self.uses]

    @property
    def uses(self) -> List[Tuple[str, str, float]]:
        """(workspace identity, location, when it last started on this env), sorted."""
        out = []
        for name, at in self.usage.get("users", {}).items():
            workspace, _, location = str(name).partition("\0")
            out.append((workspace, location, float(at) if isinstance(at, (int, float)) else 0.0))
        return sorted(out)

    @property
    def source(self) -> Dict[str, Any]:
        """What the env was built from, from its record (see `source_of`)."""
        return source_of(self.marker)


#: `source_of`'s kinds: plain requirements, a requirements file, a project's uv.lock or PEP 751
#: pylock, a project without a lock (envs/project.py names the last three).
SOURCE_KINDS = ("requirements", "requirements_file", "uv.lock", "pylock", "project")


def source_of(marker: Dict[str, Any]) -> Dict[str, Any]:
    """An env's source from its record: ``kind`` (one of SOURCE_KINDS), ``path`` (the lock,
    the requirements file or the project folder; None for requirements alone), ``project``,
    ``requirements`` (as given, credentials masked), ``extras`` and ``groups``. A record of
    a wsm older than projects has no ``source``: it is requirements, or a requirements file."""
    inputs = marker.get("inputs")
    if not isinstance(inputs, dict):
        inputs = {}
    kind = marker.get("source") or "requirements"
    req_file = marker.get("requirements_file")
    path: Optional[str] = None
    if kind in ("uv.lock", "pylock"):
        path = marker.get("lock")
    elif kind == "project":
        path = marker.get("project")
    elif req_file:
        kind, path = "requirements_file", req_file
    return {
        "kind": kind,
        "path": path,
        "project": marker.get("project"),
        "requirements": list(marker.get("requirements") or []),
        "extras": list(inputs.get("extras") or []),
        "groups": list(inputs.get("groups") or []),
    }


def entries(layout: CacheLayout) -> Iterator[EnvEntry]:
    if not layout.envs.is_dir():
        return
    for entry in sorted(os.scandir(layout.envs), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_symlink():
            continue
        marker = read_marker(layout, entry.name)
        yield EnvEntry(entry.name, marker is not None, marker or {}, read_usage(layout, entry.name))


def remove(layout: CacheLayout, key: str) -> None:
    """Unpublish first (atomic), then delete the real folder, the usage record and the log."""
    link = layout.env(key)
    target: Optional[Path] = None
    if link.is_symlink():
        target = layout.envs / os.readlink(link)
        link.unlink()
    elif link.is_dir():
        target = link
    if target is not None:
        shutil.rmtree(target, ignore_errors=True)
    for path in (layout.usage_file(key), layout.log(key)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass

"""A cgroup per location process, where this machine lets us make one.

A cgroup holds every process started inside it, whatever it does: a double fork, `setsid`,
a daemon whose parent exited. Killing "everything in the cgroup" is the only way to reach
all of a tree that Linux offers (cgroups(7)); the process tree and the process group are
not (a reparented orphan leaves both).

Layout: ``<hierarchy><our own cgroup>/wsm-<manager pid>-<random>/<location>-<n>``. The cgroup v2
hierarchy (``cgroup2`` in /proc/self/mounts, also the "unified" one of a hybrid v1/v2
machine) is preferred; ``cgroup.kill`` (Linux 5.14) kills a whole cgroup at once, and
older kernels freeze it first (``cgroup.freeze``) so that nothing forks while it is killed.
Without v2, the v1 ``freezer`` hierarchy serves the same way. Whatever cannot be created
(an unprivileged user without a delegated cgroup, a read-only /sys in a container) means
no cgroup: `CgroupRoot.create` returns None and supervision falls back to the process tree.
``WSM_CGROUP=off`` turns cgroups off on purpose.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import List, Optional, Tuple

#: Set to "off" (or 0/no/false) to never use cgroups.
CONTROL_VAR = "WSM_CGROUP"

_PREFIX = "wsm-"


class Cgroup:
    """One cgroup directory; every method tolerates it having gone already."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version  # 2: cgroup v2; 1: the v1 freezer hierarchy
        # read at every memory sample of its location: no pathlib object per read
        self._procs = os.path.join(str(path), "cgroup.procs")

    def __repr__(self) -> str:
        return f"Cgroup({str(self.path)!r}, v{self.version})"

    def add(self, pid: int) -> None:
        """Move ``pid`` in (its children from now on are born inside). Raises OSError."""
        fd = os.open(self._procs, os.O_WRONLY)
        try:
            os.write(fd, b"%d\n" % pid)
        finally:
            os.close(fd)

    def pids(self) -> List[int]:
        try:
            with open(self._procs, "rb") as f:
                text = f.read()
        except OSError:
            return []
        return [int(line) for line in text.split()]

    def signal(self, sig: int, exclude: Tuple[int, ...] = ()) -> None:
        for pid in self.pids():
            if pid not in exclude:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

    def kill(self, wait: float = 2.0) -> bool:
        """SIGKILL every process inside; True once it is empty (within ``wait`` seconds)."""
        deadline = time.monotonic() + wait
        if self.version == 2 and (self.path / "cgroup.kill").exists():
            try:
                (self.path / "cgroup.kill").write_text("1\n")
            except OSError:
                pass
        else:
            self._freeze(True)
            try:
                for _ in range(10):  # a frozen cgroup cannot fork: this converges at once
                    if not self.pids():
                        break
                    self.signal(signal.SIGKILL)
            finally:
                self._freeze(False)  # a frozen task dies only once thawed
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _freeze(self, on: bool) -> None:
        try:
            if self.version == 2:
                (self.path / "cgroup.freeze").write_text("1\n" if on else "0\n")
            else:
                (self.path / "freezer.state").write_text("FROZEN\n" if on else "THAWED\n")
        except OSError:
            pass

    def remove(self) -> bool:
        """rmdir; only an empty cgroup can go. True when it is gone."""
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return True
            except FileNotFoundError:
                return True
            except OSError:
                time.sleep(0.01)  # exited tasks leave a moment after their exit
        return False


class CgroupRoot:
    """The manager's own folder of cgroups, one per location process."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version
        self._counter = 0

    @classmethod
    def create(cls) -> Optional[CgroupRoot]:
        """Make ``wsm-<our pid>`` in the first usable hierarchy, after sweeping the folders
        of managers that died (SIGKILL); None when no cgroup can be made here."""
        if os.environ.get(CONTROL_VAR, "").strip().lower() in ("off", "0", "no", "false"):
            return None
        for base, version in _hierarchies():
            sweep_stale(base)
            path = base / f"{_PREFIX}{os.getpid()}-{os.urandom(3).hex()}"
            try:
                path.mkdir(exist_ok=True)
                probe = Cgroup(path / "probe", version)
                probe.path.mkdir(exist_ok=True)
                probe.remove()
            except OSError:
                continue
            return cls(path, version)
        return None

    def new(self, name: str) -> Optional[Cgroup]:
        """A fresh cgroup for one process of location ``name``, or None if it cannot be made."""
        self._counter += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]
        path = self.path / f"{safe}-{self._counter}"
        try:
            path.mkdir()
        except OSError:
            return None
        return Cgroup(path, self.version)

    def close(self) -> None:
        """Kill anything still inside (nothing should be) and remove the folders."""
        _remove_tree(self.path, self.version)


def _hierarchies() -> List[Tuple[Path, int]]:
    """(our own cgroup's folder, version) for each usable hierarchy, v2 first."""
    mounts: List[Tuple[Path, int]] = []
    try:
        with open("/proc/self/mounts") as f:
            lines = f.read().splitlines()
        with open("/proc/self/cgroup") as f:
            own = f.read().splitlines()
    except OSError:
        return []
    v2_own = next((line[3:] for line in own if line.startswith("0::")), None)
    v1_own = None
    for line in own:
        parts = line.split(":", 2)
        if len(parts) == 3 and "freezer" in parts[1].split(","):
            v1_own = parts[2]
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        mountpoint, fstype, options = fields[1], fields[2], fields[3].split(",")
        if fstype == "cgroup2" and v2_own is not None:
            mounts.append((Path(mountpoint + v2_own.rstrip("/")), 2))
        elif fstype == "cgroup" and "freezer" in options and v1_own is not None:
            mounts.append((Path(mountpoint + v1_own.rstrip("/")), 1))
    mounts.sort(key=lambda m: -m[1])
    return mounts


def sweep_stale(base: Path) -> None:
    """Remove the folders of managers that are gone, killing what was left inside (a
    manager and its location killed at once leave their cgroup populated)."""
    try:
        entries = list(base.iterdir())
    except OSError:
        return
    for entry in entries:
        owner = entry.name[len(_PREFIX) :].split("-")[0]
        if not entry.name.startswith(_PREFIX) or not owner.isdigit() or _pid_alive(int(owner)):
            continue
        version = 2 if (entry / "cgroup.kill").exists() or (entry / "cgroup.freeze").exists() else 1
        _remove_tree(entry, version)


def _remove_tree(path: Path, version: int) -> None:
    try:
        children = [p for p in path.iterdir() if p.is_dir()]
    except OSError:
        return
    for child in children:
        cg = Cgroup(child, version)
        if cg.pids():
            cg.kill()
        cg.remove()
    Cgroup(path, version).remove()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


__all__ = ["CONTROL_VAR", "Cgroup", "CgroupRoot", "sweep_stale"]

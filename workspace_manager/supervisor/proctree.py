"""One process's descendants, found from its own /proc entries instead of every process's.

psutil's ``children(recursive=True)`` reads ``/proc/*/stat`` of every process on the
machine to build a parent map: ~20 ms on a busy machine, once per location at each load
(``Instance.record_tree``) and stop, all on the manager's loop, and more the more processes
the machine runs (1,000 locations are 1,000 more). The kernel also lists each thread's
children in ``/proc/PID/task/TID/children`` (proc(5), Linux 3.5 with
CONFIG_PROC_CHILDREN): a walk from the loader down reads a few small files per process of
the location's own tree, whatever else runs.

Both ways are a snapshot of a tree that may change while it is read (proc(5) says as
much of the children file); the callers already live with that (a later look, the cgroup).
"""

from __future__ import annotations

import os
from typing import List, Optional


def child_pids(pid: int) -> Optional[List[int]]:
    """The pids of `pid`'s children now ([] when it has none or is gone); None when the
    kernel has no children files (the caller scans every process instead)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return [] if os.path.exists("/proc/self/task") else None
    found: List[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                text = f.read()
        except FileNotFoundError:
            if os.path.exists(f"/proc/{pid}/task/{tid}"):
                return None  # the thread is there, its children file is not: no such file
            continue  # the thread ended meanwhile
        except OSError:
            continue
        found.extend(int(p) for p in text.split())
    return found


def descendant_pids(pid: int) -> Optional[List[int]]:
    """Every descendant of `pid`, parents before their children; None when the kernel
    cannot list children (see `child_pids`)."""
    found: List[int] = []
    seen = {pid}
    stack = [pid]
    while stack:
        children = child_pids(stack.pop())
        if children is None:
            return None
        for child in children:
            if child not in seen:
                seen.add(child)
                found.append(child)
                stack.append(child)
    return found

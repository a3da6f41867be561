"""Every live process's pid, parent and process group, read straight from /proc.

One reader for the three places that must find a tree without psutil: the loader's
lifeline (it runs in other interpreters: standard library only), the env-build guard (a bare
script), and the manager's memory sampling (psutil's `process_iter` also checks each
process's identity, several times the cost of reading `/proc/PID/stat`).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple


def scan() -> Optional[List[Tuple[int, int, int]]]:
    """(pid, ppid, pgid) of every live process, zombies excluded; None without /proc.

    Fields from proc(5) `/proc/PID/stat`: state, ppid and pgrp follow the command name,
    which is in parentheses and may itself hold spaces or parentheses (hence `rfind`).
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    if not os.path.exists("/proc/self/stat"):
        return None
    rows = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rfind(b")") + 2 :].split(None, 3)
        if len(fields) >= 3 and fields[0] != b"Z":
            rows.append((int(entry), int(fields[1]), int(fields[2])))
    return rows


def alive(pid: int) -> Optional[bool]:
    """Whether `pid` is a live process (a zombie is not, as psutil's STATUS_ZOMBIE); None
    without /proc. One read of `/proc/PID/stat` (proc(5): the state follows the command
    name), so a CLI asking whether its manager lives needs no psutil (~17 ms to import)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False if os.path.exists("/proc/self/stat") else None
    state = stat[stat.rfind(b")") + 2 :][:1]
    return state not in (b"", b"Z")


def has_children(pid: int) -> Optional[bool]:
    """Whether `pid` has a child now; None when it cannot be told (no /proc, or a kernel
    without CONFIG_PROC_CHILDREN). Reads proc(5) `/proc/PID/task/TID/children` of each of
    its threads (a child belongs to the thread that forked it), so asking costs a few
    small reads, not a walk of every process."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False if os.path.exists("/proc/self/stat") else None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                if f.read().strip():
                    return True
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return None  # no such file on this kernel
        except OSError:
            continue
    return False


def children_map(rows: List[Tuple[int, int, int]]) -> Dict[int, List[int]]:
    """parent pid -> its child pids, from `scan()`'s rows."""
    children: Dict[int, List[int]] = {}
    for pid, ppid, _ in rows:
        children.setdefault(ppid, []).append(pid)
    return children


def descendants(children: Dict[int, List[int]], pid: int) -> List[int]:
    """Every descendant of `pid` in a `children_map`, parents before their children."""
    found: List[int] = []
    seen = {pid}
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                stack.append(child)
    return found

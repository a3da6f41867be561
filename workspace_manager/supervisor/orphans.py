"""The manager as child subreaper: what a dead loader leaves behind comes to us, not init.

A loader is the subreaper of its own tree (loader/lifeline.py): an orphan
of repository code stays its descendant. When the loader itself dies (SIGKILL, a crash),
its children are reparented to the nearest living subreaper above it (prctl(2)
PR_SET_CHILD_SUBREAPER): the manager, once `become_subreaper` has run. So a child of the
manager that the manager did not spawn is, by construction, a leftover of a dead location.

`collect` kills and reaps those. It must never touch a child that code in the manager waits
for: the loaders (`Child` registers them in `OWN`) and whatever the manager runs in its own
session (installers under their guard, interpreter probes, virtualenv's helpers, which
never get a session of their own). A leftover is never in the manager's session: every
loader starts one of its own, and its descendants inherit it or make their own (setsid).

Processes are started in worker threads (process.start_held_off_loop): a child exists
(in a session of its own) before its pid is known and in `OWN`. Each start runs inside
`starting()`, and `collect` skips its round while one is under way.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator, List, Set, Tuple

PR_SET_CHILD_SUBREAPER = 36

#: Children the manager spawned and reaps itself (`process.Child`).
OWN: Set[int] = set()

#: One token per fork request in flight (supervisor/forkserver.py): a forked location is our
#: child before its pid reaches us, so `collect` waits while any is in flight.
IN_FLIGHT: Set[object] = set()

_enabled = False
#: Held by `collect` for its whole round and briefly by `starting`; `_starting` counts the
#: starts under way.
_lock = threading.Lock()
_starting = 0


@contextmanager
def starting() -> Iterator[None]:
    """Wrap the start of a child the manager reaps itself (any thread): `collect` does not
    run meanwhile; put its pid in `OWN` before leaving."""
    global _starting
    with _lock:  # waits for a round of `collect` under way
        _starting += 1
    try:
        yield
    finally:
        with _lock:
            _starting -= 1


def is_subreaper() -> bool:
    """True once `become_subreaper` has succeeded: orphans (and forked locations) are ours."""
    return _enabled


def become_subreaper() -> bool:
    """Make orphans of our descendants ours; True when the kernel agreed (Linux >= 3.4)."""
    global _enabled
    try:
        import ctypes

        _enabled = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _enabled = False
    return _enabled


def _children() -> List[int]:
    """The children a leftover can be among: those of our main thread.

    The kernel lists a child under the thread that forked it (/proc/PID/task/TID/children,
    proc(5)), and gives an orphan to the subreaper's first living thread, its main thread
    (kernel/exit.c: find_new_reaper -> find_alive_thread, which walks the thread list from
    the leader): reading that one file, not one per thread (14 opens a second with the
    worker threads of an idle manager), finds every leftover. The other threads' files are
    read only when the main thread's cannot be."""
    found: List[int] = []
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        pass
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                found += [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            continue
    return found


def _session(pid: int) -> Tuple[int, bool]:
    """(session id, is a zombie) of `pid` (zombies keep their session), or (-1, False)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rfind(b")") + 2 :].split()
        return int(fields[3]), fields[0] == b"Z"
    except (OSError, ValueError, IndexError):
        return -1, False


def collect() -> List[int]:
    """SIGKILL and reap every leftover child (see the module docstring); the pids of those
    that were still running (a leftover already killed by its location's stop is only
    reaped)."""
    if not _enabled or IN_FLIGHT:
        return []
    with _lock:
        if _starting:  # a child being born may not be in OWN yet: next round
            return []
        return _collect()


def _collect() -> List[int]:
    ours = os.getsid(0)
    found = []
    for pid in _children():
        if pid in OWN:
            continue
        sid, zombie = _session(pid)
        if sid in (-1, ours):
            continue
        if not zombie:
            found.append(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.waitpid(pid, os.WNOHANG)  # a zombie goes now; one just killed, next round
        except ChildProcessError:
            pass
    return found

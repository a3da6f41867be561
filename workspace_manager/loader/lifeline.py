"""The lifecycle channel: notifications to the manager, and its EOF as our cue to die.

The manager holds the other end of an inherited socket. When the manager dies, even by
SIGKILL, the kernel closes its end and our blocked `recv` returns EOF: we then stop
everything repository code spawned (our process group, our descendants, which include its
orphans as we are their subreaper, and our cgroup), SIGTERM first, SIGKILL after ~1s.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

from ..protocol.framing import encode_frame
from . import proctable

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, List, NoReturn, Optional

KILL_GRACE = 1.0

#: Set once the manager is gone; the SIGTERM handler then leaves the killing to us.
lost = threading.Event()


def exit_now(status: int) -> NoReturn:
    """Exit now (the loader's or a run's process), even if repository code left non-daemon
    threads running; stdout and stderr are flushed first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status)


def open_channel(fd: int) -> socket.socket:
    """Adopt the inherited fd; keep it out of processes repository code spawns."""
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    return sock


def send(sock: Optional[socket.socket], message: Any) -> None:
    if sock is None:
        return
    try:
        sock.sendall(encode_frame(message))
    except OSError:
        pass  # the manager is gone; the watcher thread handles that


def watch(sock: socket.socket) -> threading.Thread:
    """Start the daemon thread that waits for EOF on `sock`."""
    thread = threading.Thread(target=_wait_for_eof, args=(sock,), name="wsm-lifeline", daemon=True)
    thread.start()
    return thread


def _wait_for_eof(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass  # the manager sends nothing today; ignore anything it might
    except OSError:
        pass
    stop_process_group()


#: Our cgroup's folder, when the manager gave us one (bootstrap ``cgroup``).
cgroup_dir: Optional[str] = None


def contain(cgroup: Optional[str]) -> None:
    """Make everything we start findable when we must kill it: the cgroup the manager put
    us in, if any, and in every case become a child subreaper (prctl(2)
    PR_SET_CHILD_SUBREAPER, Linux 3.4), so an orphan of ours (a double-forked daemon) is
    reparented to us, not to our parent, and stays our descendant while we run. With a
    cgroup too: otherwise it would go to the manager, whose sweep of dead loaders'
    leftovers (supervisor/orphans.py) takes every child it did not start for one. We never
    reap such adopted orphans (we cannot tell them from children whose status repository
    code will wait for): one that exits stays a zombie until we exit."""
    global cgroup_dir
    cgroup_dir = cgroup
    _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER; a failure leaves us as before


def _prctl(option: int, arg2: int) -> None:
    """prctl(2) `option` with `arg2` (and zeros), its result ignored; nothing if it fails.

    Through `_ctypes`, the C half of ctypes, whose Python half defines its whole library
    of types at import (~3 ms, ~0.25 MB in every location) for this one call
    (docs/architecture.md, "What a location imports"); through ctypes where `_ctypes`
    differs (another implementation).
    """
    try:
        import _ctypes

        class _Function(_ctypes.CFuncPtr):  # what ctypes.CDLL makes for each function
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = None  # the result is not looked at

        class _Program:  # what CFuncPtr((name, library)) reads: the dlopen(NULL) handle
            _handle = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]

        _Function(("prctl", _Program()))(option, arg2, 0, 0, 0)  # type: ignore[arg-type]
        return
    except Exception:
        pass
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, arg2, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _cgroup_members() -> List[int]:
    if cgroup_dir is None:
        return []
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def _members(me: int) -> Optional[List[int]]:
    """Everything of ours but us: our group, our descendants (orphans too: we are their
    subreaper), and our cgroup; None without /proc."""
    rows = proctable.scan()
    if rows is None:
        return None
    found = set(_cgroup_members())
    found.update(pid for pid, _, pgid in rows if pgid == me)
    found.update(proctable.descendants(proctable.children_map(rows), me))
    found.discard(me)
    return sorted(found)


def _group_members(pgid: int) -> Optional[List[int]]:
    """Live pids in process group `pgid` (zombies excluded), or None without /proc."""
    rows = proctable.scan()
    return None if rows is None else [pid for pid, _, group in rows if group == pgid]


def _signal(pids: List[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def stop_process_group(grace: float = KILL_GRACE) -> None:
    """SIGTERM everything of ours (`_members`), SIGKILL what is left after `grace` seconds,
    then exit."""
    lost.set()
    # Scanning /proc releases the GIL around every open and read. If repository code keeps
    # the main thread busy (a busy loop, a stuck import), each release hands it the GIL and
    # this thread waits a whole switch interval (5 ms) to get it back: ~600 of those made
    # this take seconds. We are about to die, so take turns much faster.
    sys.setswitchinterval(1e-4)
    me = os.getpid()
    if os.getpgrp() != me and cgroup_dir is None:
        os._exit(1)  # not started in our own session: our group is not ours to kill
    others = _members(me)
    if others is None:
        try:
            os.killpg(me, signal.SIGTERM)  # our own handler ignores it (`lost` is set)
        except OSError:
            pass
    else:
        _signal(others, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        others = _members(me)
        if others is not None and not others:
            break
        time.sleep(0.05)
    try:
        for _ in range(5):  # SIGKILL cannot be ignored; a fork meanwhile needs another round
            others = _members(me) or []
            if not others:
                break
            _signal(others, signal.SIGKILL)
        os.killpg(me, signal.SIGKILL)
    finally:
        os._exit(1)

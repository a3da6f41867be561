"""Run a command so that it, and everything it starts, dies with the manager.

An installer (pip, uv) starts build backends (`setup.py`, PEP 517 hooks) that start
compilers. Killed with the manager, none of them would notice: nothing tells a process that
its grandparent died. So the manager runs the installer under this guard:

    <python> -I -S guard.py FD -- ARGV...

The guard becomes a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER, Linux 3.4), so every
process the command starts stays its descendant even after its parent exits; it runs
ARGV, reaps whatever exits, and ends in one of two ways:

- the command exits: whatever it left running is SIGKILLed, and the guard exits with its
  status (128+N for a signal N, as a shell reports it);
- FD (the read end of a pipe whose write end only the manager holds) reaches EOF, which the
  kernel makes happen when the manager dies, even by SIGKILL: the guard SIGKILLs every
  descendant and exits 137. SIGTERM does the same (`Cancel` in build.py).

Standard library only, and run with -I -S: it starts in milliseconds and imports nothing of
the manager's environment.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
from typing import Any, List, Optional

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the command's own children are still found as descendants


def _load_proctable() -> Any:
    """`loader/proctable.py`, the one /proc reader, loaded by its path: this guard runs as
    a bare script (-I -S), so the package is not importable, and must stay that way."""
    path = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "loader", "proctable.py"
    )
    spec = importlib.util.spec_from_file_location("_wsm_proctable", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


proctable = _load_proctable()


def descendants(pid: int) -> List[int]:
    """Live descendants of `pid`, from /proc (zombies excluded)."""
    rows = proctable.scan()
    if rows is None:
        return []
    return proctable.descendants(proctable.children_map(rows), pid)


def kill_all() -> None:
    """SIGKILL every descendant; repeat while any forked meanwhile."""
    me = os.getpid()
    for _ in range(10):
        left = descendants(me)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _die(code: int) -> None:
    kill_all()
    os._exit(code)


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    _die(137)


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        print("usage: guard.py FD -- ARGV...", file=sys.stderr)
        os._exit(2)
    fd = int(args[0])
    os.set_inheritable(fd, False)
    _become_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: _die(143))
    # Ctrl-C at wsm's terminal reaches the installer too (our group): let it decide, and
    # report its exit as usual. A handler, not SIG_IGN, which the installer would inherit.
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        child = subprocess.Popen(args[2:])
    except OSError as exc:
        print(f"cannot run {args[2]}: {exc}", file=sys.stderr)
        os._exit(127)
    threading.Thread(target=_watch, args=(fd,), daemon=True).start()
    while True:
        try:
            pid, status = os.wait()  # every exit below us, adopted orphans included
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
        if pid == child.pid:
            child.returncode = 0  # reaped here; keep Popen from waiting for it again
            code = os.waitstatus_to_exitcode(status)
            _die(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()

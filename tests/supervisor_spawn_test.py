"""What a location's start costs the manager's loop: the process is started in a worker thread
(fork+exec and joining a cgroup block for milliseconds each), never taken for a leftover by
the orphan sweep while it is being born, and killed when the start is cancelled; a tree is
found from its own /proc children files, not from a scan of every process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, List

import psutil
import pytest

from workspace_manager.supervisor import orphans, proctree
from workspace_manager.supervisor import process as proc_mod

# waits for its bootstrap line as a loader does, then for EOF on its status socket
WAITER = "import sys; sys.stdin.readline(); import time; time.sleep(60)"

# a parent with a child and a grandchild (the grandchild in a session of its own), which
# prints their pids and waits
TREE = r"""
import subprocess, sys
LEAF = "import time; time.sleep(600)"
MID = ("import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', %r], "
       "start_new_session=True); print(c.pid, flush=True); import time; time.sleep(600)") % LEAF
mid = subprocess.Popen([sys.executable, "-c", MID], stdout=subprocess.PIPE)
leaf = int(mid.stdout.readline())
print(mid.pid, leaf, flush=True)
import time; time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill(pids: List[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def tree() -> Any:
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    mid, leaf = (int(p) for p in proc.stdout.readline().split())
    yield proc.pid, mid, leaf
    _kill([leaf, mid, proc.pid])
    proc.wait()


def test_descendants_come_from_the_children_files_and_match_psutil(tree: Any) -> None:
    root, mid, leaf = tree
    found = proctree.descendant_pids(root)
    assert found == [mid, leaf]  # parents before their children, the setsid one included
    assert sorted(found) == sorted(p.pid for p in psutil.Process(root).children(recursive=True))
    assert proctree.child_pids(root) == [mid]


def test_a_gone_process_has_no_children() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert proctree.child_pids(proc.pid) == []
    assert proctree.descendant_pids(proc.pid) == []


def test_process_tree_does_not_scan_every_process(
    tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cause of ~20 ms per location on the loop at each load (Instance.record_tree):
    psutil's `children` reads /proc/*/stat of the whole machine."""
    root, mid, leaf = tree

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a scan of every process")

    monkeypatch.setattr(psutil.Process, "children", refuse)
    assert [p.pid for p in proc_mod.process_tree(root)] == [root, mid, leaf]


def test_process_tree_falls_back_to_psutil_without_children_files(
    tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, mid, leaf = tree
    monkeypatch.setattr(proctree, "descendant_pids", lambda pid: None)
    assert sorted(p.pid for p in proc_mod.process_tree(root)) == sorted([root, mid, leaf])


def test_a_loader_is_started_off_the_loop_and_the_loop_keeps_turning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow start (a loaded machine, a slow cgroup write) holds a worker thread, not the
    loop: other locations' starts and health answers go on meanwhile."""
    real = proc_mod.start_held
    threads: List[threading.Thread] = []

    def slow_start(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(proc_mod, "start_held", slow_start)

    async def main() -> float:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        spawned = await proc_mod.spawn_loader(
            [sys.executable, "-c", WAITER], {}, cwd="/", env=dict(os.environ)
        )
        stop = True
        await task
        spawned.process.popen.kill()
        await spawned.process.wait()
        spawned.status_writer.close()
        return ticks

    ticks = asyncio.run(main())
    assert threads and threads[0] is not threading.main_thread()
    assert ticks >= 10  # the loop turned while the start slept in its thread


def test_a_start_cancelled_meanwhile_kills_its_process(monkeypatch: pytest.MonkeyPatch) -> None:
    real = proc_mod.start_held
    started: List[int] = []

    def start_then_wait(*args: Any, **kwargs: Any) -> Any:
        held = real(*args, **kwargs)
        started.append(held.pid)
        time.sleep(0.5)  # the start is cancelled meanwhile
        return held

    monkeypatch.setattr(proc_mod, "start_held", start_then_wait)

    async def main() -> None:
        task = asyncio.ensure_future(
            proc_mod.spawn_loader([sys.executable, "-c", WAITER], {}, cwd="/", env=dict(os.environ))
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 10
        while (not started or _alive(started[0])) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    try:
        asyncio.run(main())
        assert started and not _alive(started[0])
    finally:
        _kill(started)


def test_the_orphan_sweep_skips_a_child_being_born(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child started in a worker thread exists (in a session of its own) before its pid is
    in OWN; a sweep then would kill and reap it, and its `Child` read exit status 0."""
    monkeypatch.setattr(orphans, "_enabled", True)
    born = threading.Event()
    release = threading.Event()
    child: List[subprocess.Popen] = []

    def start() -> None:
        with orphans.starting():
            child.append(
                subprocess.Popen(
                    [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
                )
            )
            born.set()
            release.wait(10)
            orphans.OWN.add(child[0].pid)

    thread = threading.Thread(target=start)
    thread.start()
    try:
        assert born.wait(10)
        assert orphans.collect() == []  # in the middle of a start: no sweep
        assert child[0].poll() is None
        release.set()
        thread.join(10)
        assert orphans.collect() == []  # in OWN now: never a leftover
        assert child[0].poll() is None
    finally:
        release.set()
        thread.join(10)
        orphans.OWN.discard(child[0].pid)
        child[0].kill()
        child[0].wait()

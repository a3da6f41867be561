"""Process trees: the shared process table used for memory sampling, and stopping a whole
tree (also children that ignore SIGTERM or left the process group)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import List

import psutil
import pytest

from workspace_manager.supervisor.process import ProcessTable, describe_exit, terminate_tree

# A parent that starts `n` SIGTERM-ignoring children (one of them in a session of its own),
# prints their pids and waits.
TREE = r"""
import os, signal, subprocess, sys, time
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ok', flush=True)\ntime.sleep(600)"
kids = [subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE)]
kids.append(subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE,
                             start_new_session=True))
for k in kids:
    k.stdout.readline()   # its handler is installed
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # before the pids are out: a SIGTERM may follow
print(" ".join(str(k.pid) for k in kids), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _spawn_tree() -> tuple:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", TREE, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    kids = [int(p) for p in line.split()]
    return proc, kids


def _kill_all(pids: List[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_terminate_tree_kills_children_that_ignore_sigterm_after_the_grace() -> None:
    async def main() -> tuple:
        proc, kids = await _spawn_tree()
        try:
            t = time.monotonic()
            await terminate_tree(proc, grace=0.5)
            took = time.monotonic() - t
            return proc.returncode, kids, took, [k for k in kids if _alive(k)]
        finally:
            _kill_all([proc.pid, *kids])

    returncode, kids, took, left = asyncio.run(main())
    assert left == []  # both, also the one in its own session (found as a descendant)
    assert returncode == -signal.SIGKILL  # it ignored SIGTERM too
    assert 0.5 <= took < 3.0  # the grace was given, then SIGKILL at once


def test_terminate_tree_without_grace_is_immediate() -> None:
    async def main() -> tuple:
        proc, kids = await _spawn_tree()
        try:
            t = time.monotonic()
            await terminate_tree(proc, grace=0)
            return time.monotonic() - t, [k for k in kids if _alive(k)]
        finally:
            _kill_all([proc.pid, *kids])

    took, left = asyncio.run(main())
    assert left == []
    assert took < 1.5


def test_process_table_finds_descendants_and_rescans_only_when_stale() -> None:
    now = [0.0]
    table = ProcessTable(max_age=5.0, clock=lambda: now[0])
    parent = psutil.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "time.sleep(60)",
        ],
    )
    try:
        deadline = time.monotonic() + 30
        while not parent.children():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.02)
        child = parent.children()[0].pid
        assert table.descendants(parent.pid) == [child]
        assert {parent.pid, child} <= set(table.descendants(os.getpid()))  # recursive
        late = psutil.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            # within max_age the table is not rescanned: the newcomer is not seen yet...
            assert late.pid not in table.descendants(os.getpid())
            now[0] = 5.0
            # ...and is from the next scan on
            assert late.pid in table.descendants(os.getpid())
        finally:
            late.kill()
            late.wait()
    finally:
        for p in parent.children(recursive=True):
            p.kill()
        parent.kill()
        parent.wait()


def test_process_table_of_an_unknown_pid_is_empty() -> None:
    assert ProcessTable().descendants(2**22 + 12345) == []


@pytest.mark.parametrize(
    "code, text",
    [
        (0, "exited with status 0"),
        (3, "exited with status 3"),
        (-signal.SIGSEGV, "killed by SIGSEGV"),
        (-signal.SIGKILL, "killed by SIGKILL"),
        (None, "still running"),
    ],
)
def test_describe_exit(code, text) -> None:
    assert describe_exit(code) == text

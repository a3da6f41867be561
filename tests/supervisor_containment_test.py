"""Containment pieces on their own: a cgroup per process tree, exit detection that does not
wait for pipes, PSS, and the installer guard. Real processes; each test tracks the pids it
started (never a scan of the machine)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import psutil
import pytest

from workspace_manager.envs import guard
from workspace_manager.supervisor import cgroup as cg
from workspace_manager.supervisor.process import Child, pss_bytes, terminate_tree

# Prints the pids of a child in its own session and of a double-forked setsid daemon whose
# parent exited, then waits: the daemon is no descendant of this process.
ESCAPER = r"""
import os, subprocess, sys, time
kid = subprocess.Popen(["sleep", "1011"], start_new_session=True)
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        os.execvp("sleep", ["sleep", "1012"])
    os._exit(0)
os.wait()
daemon = int(os.read(r, 64))
print(kid.pid, daemon, flush=True)
time.sleep(600)
"""


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _procs(pids: List[int]) -> List[psutil.Process]:
    return [psutil.Process(p) for p in pids]


def _kill(procs: List[psutil.Process]) -> None:
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


@pytest.fixture
def root():
    r = cg.CgroupRoot.create()
    if r is None:
        pytest.skip("no cgroup can be created here")
    yield r
    r.close()


def test_cgroup_kill_reaches_what_left_the_tree_and_the_group(root: cg.CgroupRoot) -> None:
    group = root.new("escaper")
    assert group is not None
    # The process joins before it starts anything: a shell that waits for a line first.
    proc = subprocess.Popen(
        ["sh", "-c", f"read _; exec {sys.executable} -c '{ESCAPER}'"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    started: List[psutil.Process] = [psutil.Process(proc.pid)]
    try:
        group.add(proc.pid)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        started += _procs([int(p) for p in proc.stdout.readline().split()])
        assert psutil.Process(started[2].pid).ppid() != proc.pid  # the daemon escaped the tree
        assert {p.pid for p in started} <= set(group.pids())
        assert group.kill(wait=5)
        proc.wait(5)
        assert not [p for p in started if _alive(p)]
        assert group.remove()
    finally:
        _kill(started)


def test_sweep_kills_and_removes_what_a_dead_manager_left(root: cg.CgroupRoot) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that is no manager any more
    stale = root.path.parent / f"wsm-{dead.pid}-abcdef"
    (stale / "loc-1").mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "1013"])
    try:
        cg.Cgroup(stale / "loc-1", root.version).add(sleeper.pid)
        cg.sweep_stale(root.path.parent)
        assert sleeper.wait(5) == -signal.SIGKILL
        assert not stale.exists()
        assert root.path.exists()  # ours: alive, untouched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_cgroups_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cg.CONTROL_VAR, "off")
    assert cg.CgroupRoot.create() is None


def test_exit_is_seen_while_a_grandchild_holds_the_pipes() -> None:
    """CPython gh-119710: asyncio's Process.wait() waits for the pipes to close too."""
    code = (
        "import subprocess, sys\n"
        "print(subprocess.Popen(['sleep', '1014']).pid, flush=True)\n"
        "sys.exit(3)\n"
    )

    async def main() -> tuple:
        popen = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        child = Child(popen)
        assert popen.stdout is not None and popen.stderr is not None
        holder = psutil.Process(int(popen.stdout.readline()))
        try:
            return await asyncio.wait_for(child.wait(), 10), child.returncode
        finally:
            await terminate_tree(child, grace=0)  # the sleep is in its group
            deadline = time.monotonic() + 5
            while _alive(holder):
                assert time.monotonic() < deadline, "the child holding the pipes survived"
                await asyncio.sleep(0.02)
            popen.stdout.close()
            popen.stderr.close()

    assert asyncio.run(main()) == (3, 3)


def test_pss_counts_shared_pages_once() -> None:
    """A parent and 5 forked children sharing 32 MB: the sum of PSS is far below the sum of
    RSS (which counts the shared block 6 times)."""
    code = (
        "import os, sys, time\n"
        "block = bytearray(os.urandom(32 * 2**20))\n"
        "kids = []\n"
        "for _ in range(5):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        time.sleep(600); os._exit(0)\n"
        "    kids.append(pid)\n"
        "print(*kids, flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    pids = [proc.pid, *map(int, proc.stdout.readline().split())]
    try:
        pss = [pss_bytes(p) for p in pids]
        rss = [psutil.Process(p).memory_info().rss for p in pids]
        assert all(isinstance(x, int) and x > 0 for x in pss), pss
        assert sum(rss) > 6 * 32 * 2**20
        assert 32 * 2**20 < sum(pss) < 2 * 32 * 2**20 + 40 * 2**20, (sum(pss), sum(rss))
    finally:
        for p in pids:
            os.kill(p, signal.SIGKILL)
        proc.wait()
    assert pss_bytes(2**22 + 12345) is None


def test_guard_passes_the_status_and_kills_leftovers(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = (
        f"setsid sh -c 'echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; exec sleep 1015'"
        f" >/dev/null 2>&1 & while [ ! -s {pidfile} ]; do sleep 0.01; done; exit 7"
    )
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", guard.__file__, str(r), "--", "sh", "-c", script],
        pass_fds=(r,),
        start_new_session=True,
    )
    os.close(r)
    try:
        assert proc.wait(10) == 7
        deadline = time.monotonic() + 5
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        daemon = int(pidfile.read_text())
        deadline = time.monotonic() + 5
        while psutil.pid_exists(daemon) and psutil.Process(daemon).status() != "zombie":
            assert time.monotonic() < deadline, "the orphan outlived the guard"
            time.sleep(0.02)
    finally:
        os.close(w)


def test_guard_kills_everything_when_its_lifeline_closes(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sh -c 'echo $$ > {pidfile}; exec sleep 1016' & wait"
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", guard.__file__, str(r), "--", "sh", "-c", script],
        pass_fds=(r,),
        start_new_session=True,
    )
    os.close(r)
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    grandchild = psutil.Process(int(pidfile.read_text()))
    os.close(w)  # what the kernel does when the manager dies
    assert proc.wait(10) == 137
    grandchild_gone = not _alive(grandchild)
    if not grandchild_gone:
        grandchild.kill()
    assert grandchild_gone


def test_v1_freezer_cgroup_kills_a_forking_tree() -> None:
    """The v1 fallback: freeze, SIGKILL every member, thaw."""
    v1 = [base for base, version in cg._hierarchies() if version == 1]
    if not v1:
        pytest.skip("no v1 freezer hierarchy")
    path = v1[0] / f"wsm-{os.getpid()}-v1test"
    try:
        path.mkdir()
    except OSError:
        pytest.skip("cannot create a v1 freezer cgroup here")
    group = cg.Cgroup(path, 1)
    proc = subprocess.Popen(
        ["sh", "-c", f"read _; exec {sys.executable} -c '{ESCAPER}'"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    started: List[psutil.Process] = [psutil.Process(proc.pid)]
    try:
        group.add(proc.pid)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        started += _procs([int(p) for p in proc.stdout.readline().split()])
        assert group.kill(wait=5)
        proc.wait(5)
        assert not [p for p in started if _alive(p)]
    finally:
        _kill(started)
        group.remove()

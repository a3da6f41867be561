"""`proctable.alive`: whether a pid is a live process, from /proc, as psutil would say."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from workspace_manager.loader import proctable


def test_a_running_process_is_alive() -> None:
    assert proctable.alive(os.getpid()) is True
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            assert proctable.alive(child.pid) is True
        finally:
            child.kill()


def test_a_zombie_and_a_reaped_process_are_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
    assert proctable.alive(child.pid) is False
    child.wait()
    assert proctable.alive(child.pid) is False


@pytest.mark.parametrize("pid", [0, -1])
def test_no_process_has_a_pid_below_one(pid: int) -> None:
    assert proctable.alive(pid) is False


def test_without_proc_it_does_not_know(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proctable.os.path, "exists", lambda path: False)
    assert proctable.alive(2**22 + 12345) is None  # above pid_max: no /proc entry

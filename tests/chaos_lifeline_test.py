"""The lifeline under chaos: a loader whose main thread spins (a busy loop in an import)
must still exit promptly when the manager dies.

The lifeline thread scans /proc for its process group, and every open/read releases the
GIL; a spinning main thread then takes the GIL each time, and got it back only after a
switch interval (5 ms). With ~600 such releases that took seconds (seen in the chaos
suite: 2.3 s); the lifeline now shortens the switch interval once the manager is gone.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from typing import Iterator, List

import psutil
import pytest

from workspace_manager.loader.harness import LoaderProcess, file_target

SPIN = """
n = 0
while True:
    n += 1
"""


@pytest.fixture
def rundir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="wsm-t", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _spinning(pid: int) -> bool:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system > 0.2


@pytest.mark.parametrize("python", [sys.executable, "/usr/bin/python3"])
def test_a_spinning_loader_exits_promptly_when_the_manager_dies(rundir: str, python: str) -> None:
    if not os.path.exists(python):
        pytest.skip(f"no {python}")
    path = os.path.join(rundir, "repo.py")
    with open(path, "w") as f:
        f.write(SPIN)
    took: List[float] = []
    for _ in range(4):  # the slow case needed both threads on a core at once: try a few
        loader = LoaderProcess(python, file_target(path), rundir)
        try:
            loader.spawn()
            deadline = time.monotonic() + 20
            while not _spinning(loader.pid):
                assert time.monotonic() < deadline, "the loader never started spinning"
                time.sleep(0.02)
            t = time.monotonic()
            loader.close_lifeline()  # what the kernel does when the manager dies
            assert loader.wait(5) == -9  # it SIGKILLed its own group
            took.append(time.monotonic() - t)
        finally:
            loader.stop()
    # nothing else is in its group, so there is no grace to wait for
    assert max(took) < 0.6, took

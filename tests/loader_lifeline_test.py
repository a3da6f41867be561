"""The manager's death (EOF on the lifecycle socket) takes the loader's whole group with it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import textwrap
import time

import psutil
import pytest

from workspace_manager.loader.harness import LoaderProcess, file_target

REPO = textwrap.dedent(
    """
    import subprocess, sys
    from workspace_manager import job, repository

    CHILD = (
        "import signal, sys, time\\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "print('ready', flush=True)\\n"
        "time.sleep(120)\\n"
    )

    @job
    def spawn_stubborn_child():
        # A grandchild of the loader that ignores SIGTERM: only SIGKILL stops it.
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
        assert proc.stdout.readline() == b"ready\\n"
        return proc.pid

    @repository
    def lifeline_repo():
        return [spawn_stubborn_child]
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def rundir():
    path = tempfile.mkdtemp(prefix="wsm-t", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("python", [sys.executable, "/usr/bin/python3"])
def test_lifeline_eof_kills_loader_and_stubborn_grandchild(rundir, python):
    if not os.path.exists(python):
        pytest.skip(f"no {python}")
    path = os.path.join(rundir, "repo.py")
    with open(path, "w") as f:
        f.write(REPO)
    loader = LoaderProcess(python, file_target(path), rundir)
    grandchild = None
    try:
        event = loader.start()
        assert event[1] == "loaded", loader.stderr_text()
        with loader.client() as client:
            grandchild = client.call("execute_job", {"job": "spawn_stubborn_child"})["result"]
        assert psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE
        assert (
            os.getpgid(grandchild) == loader.pid
        )  # in the loader's group, as the manager set it up

        t0 = time.monotonic()
        loader.close_lifeline()  # what the kernel does when the manager dies
        deadline = t0 + 5
        while not (_gone(loader.pid) and _gone(grandchild)):
            assert time.monotonic() < deadline, "loader or grandchild survived the lifeline EOF"
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        assert loader.wait(5) == -9  # it SIGKILLs its own group last
        assert elapsed < 5
    finally:
        loader.stop()
        if grandchild is not None and not _gone(grandchild):
            os.kill(grandchild, 9)
            pytest.fail("grandchild survived")

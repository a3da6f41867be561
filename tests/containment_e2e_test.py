"""Nothing a location starts outlives it, and its exit is seen at once (issue 8, sections 2-3).

Every test runs the real `wsm up`. The repositories write the pids of what they start to a
file in the test's folder, so the checks follow exactly those processes (never a scan of
the machine), each identified by its start time so a reused pid is not mistaken for it.
Each path runs twice: with a cgroup per location (this machine, as root) and without
(`WSM_CGROUP=off`: what an unprivileged user without a delegated cgroup gets).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import psutil
import pytest
from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp, wait_for

# The example, plus a record of every process it starts: its own session, and a
# double-forked daemon in a session of its own whose parent exits at once.
SPAWNER = """
import os, subprocess
PIDS = os.environ["PIDFILE"]
p = subprocess.Popen(["sleep", "1003"], start_new_session=True)
with open(PIDS, "a") as f:
    f.write(f"{os.getpid()} {p.pid}\\n")
subprocess.run(["sh", "-c",
    f'setsid sh -c "echo {os.getpid()} \\\\$\\\\$ >> $PIDFILE; exec sleep 1004" > /dev/null 2>&1 &'])
from workspace_manager import job, repository
@job
def noop(): ...
@repository
def spawner_repo():
    return [noop]
"""

# The crasher: an ordinary child holds the pipes; the loader dies 1.5 s after start.
CRASHER = """
import os, subprocess, threading, time
PIDS = os.environ["PIDFILE"]
p = subprocess.Popen(["sleep", "1001"])
with open(PIDS, "a") as f:
    f.write(f"{os.getpid()} {p.pid}\\n")
threading.Thread(target=lambda: (time.sleep(1.5), os._exit(1)), daemon=True).start()
from workspace_manager import job, repository
@job
def noop(): ...
@repository
def crasher_repo():
    return [noop]
"""

MODES = [pytest.param({}, id="cgroup"), pytest.param({"WSM_CGROUP": "off"}, id="no-cgroup")]


def _identity(pid: int) -> Tuple[int, float]:
    try:
        return pid, psutil.Process(pid).create_time()
    except psutil.Error:
        return pid, -1.0


def _alive(ident: Tuple[int, float]) -> bool:
    pid, started = ident
    try:
        p = psutil.Process(pid)
        return p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Pids:
    """The pid file a repository appends to: "LOADER_PID CHILD_PID" per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: Dict[int, Tuple[int, float]] = {}

    def read(self) -> List[Tuple[int, int]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        rows = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2:
                rows.append((int(parts[0]), int(parts[1])))
                for pid in map(int, parts):
                    self.known.setdefault(pid, _identity(pid))
        return rows

    def children_of(self, loader: int) -> List[int]:
        """The pids recorded for one loader generation (the daemon records its parent `sh`,
        whose parent is the loader: matched through the first row's generation)."""
        return [child for parent, child in self.read() if parent == loader]

    def wait(self, count: int, timeout: float = 30.0) -> List[Tuple[int, int]]:
        return wait_for(lambda: len(self.read()) >= count and self.read(), timeout, "pids")

    def alive(self) -> List[int]:
        self.read()
        return [pid for pid, ident in self.known.items() if _alive(ident)]

    def assert_all_gone(self, timeout: float = 10.0) -> None:
        try:
            wait_for(lambda: not self.alive(), timeout, "every recorded process to exit")
        except AssertionError:
            left = self.alive()
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            raise AssertionError(f"left behind: {left}") from None

    def kill_all(self) -> None:
        for pid in self.alive():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _workspace(ws: WorkspaceDir, code: str, name: str, pids: Path, **supervision: object) -> Path:
    ws.file(f"{name}/repo.py", code)
    sup = {"heartbeat_seconds": 1, "backoff_initial_seconds": 0.2, "backoff_max_seconds": 0.5}
    sup.update(supervision)  # type: ignore[arg-type]
    return ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": f"{name}/repo.py",
                        "location_name": name,
                        "env_vars": {"PIDFILE": str(pids)},
                    }
                }
            ],
            "supervision": sup,
        }
    )


def _env(ws: WorkspaceDir, mode: Dict[str, str]) -> Dict[str, str]:
    env = dict(ws.env)
    env.pop("WSM_CGROUP", None)
    env.update(mode)
    return env


@pytest.mark.parametrize("mode", MODES)
def test_down_leaves_nothing_the_location_started(ws: WorkspaceDir, mode: Dict[str, str]) -> None:
    pids = Pids(ws.root / "pids")
    path = _workspace(ws, SPAWNER, "spawner", pids.path)
    try:
        with WsmUp(ws, "-w", str(path), env=_env(ws, mode)) as up:
            up.wait_state("spawner", "ready")
            pids.wait(2)
            assert len(pids.alive()) >= 3  # loader, its own-session child, the daemon
            # A running location keeps what it started: the manager's sweep of leftovers
            # (every second) must not take its daemon for the orphan of a dead loader.
            time.sleep(2.5)
            assert len(pids.alive()) >= 3, up.output()
            assert "left by a location" not in up.output()
            down = subprocess.run(
                [*_wsm(), "down", "-w", str(path)],
                cwd=ws.root,
                env=_env(ws, mode),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert down.returncode == 0, down.stderr
            assert up.proc.wait(30) == 0
            pids.assert_all_gone()
    finally:
        pids.kill_all()


@pytest.mark.parametrize("mode", MODES)
def test_reload_and_loader_sigkill_leave_nothing_of_the_old_generation(
    ws: WorkspaceDir, mode: Dict[str, str]
) -> None:
    pids = Pids(ws.root / "pids")
    path = _workspace(ws, SPAWNER, "spawner", pids.path)
    try:
        with WsmUp(ws, "-w", str(path), env=_env(ws, mode)) as up:
            first = up.wait_state("spawner", "ready")["pid"]
            pids.wait(2)
            old = {pid: pids.known[pid] for pid in pids.known}
            reload = subprocess.run(
                [*_wsm(), "reload", "-w", str(path), "spawner"],
                cwd=ws.root,
                env=_env(ws, mode),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert reload.returncode == 0, reload.stderr
            second = wait_for(
                lambda: (p := up.location("spawner")["pid"]) not in (None, first) and p,
                30,
                "the successor",
            )
            wait_for(lambda: not [i for i in old.values() if _alive(i)], 10, "the old tree to go")
            pids.wait(4)
            old = {pid: pids.known[pid] for pid in pids.known if pid not in old}
            os.kill(second, signal.SIGKILL)  # the loader dies; its tree must go with it
            wait_for(lambda: not [i for i in old.values() if _alive(i)], 10, "the tree to go")
            up.wait_state("spawner", "ready")  # restarted
            pids.wait(6)
        pids.assert_all_gone()
    finally:
        pids.kill_all()


LATE_DAEMON = """
import os, subprocess
from workspace_manager import job, repository
@job
def start_daemon():
    subprocess.run(["sh", "-c",
        f'setsid sh -c "echo {os.getpid()} \\\\$\\\\$ >> $PIDFILE; exec sleep 1007" > /dev/null 2>&1 &'])
@repository
def late_repo():
    return [start_daemon]
"""


@pytest.mark.parametrize("mode", MODES)
def test_loader_sigkill_kills_a_daemon_it_started_after_the_last_sample(
    ws: WorkspaceDir, mode: Dict[str, str]
) -> None:
    """A daemon double-forked by a job, then the loader killed before any memory sample
    saw it (heartbeats 60 s apart): without a cgroup only the manager, as subreaper of
    what the dead loader adopted, can still find it."""
    pids = Pids(ws.root / "pids")
    path = _workspace(ws, LATE_DAEMON, "late", pids.path, heartbeat_seconds=60)
    try:
        with WsmUp(ws, "-w", str(path), env=_env(ws, mode)) as up:
            loader = up.wait_state("late", "ready")["pid"]
            with manager_client(ws) as client:
                client.call(
                    "call",
                    {
                        "location": "late",
                        "method": "execute_job",
                        "params": {"job": "start_daemon"},
                    },
                )
            [(_, daemon)] = pids.wait(1)
            os.kill(loader, signal.SIGKILL)
            pids.assert_all_gone(timeout=10)
            up.wait_state("late", "ready")
    finally:
        pids.kill_all()


@pytest.mark.parametrize("mode", MODES)
def test_manager_sigkill_leaves_nothing_the_location_started(
    ws: WorkspaceDir, mode: Dict[str, str]
) -> None:
    pids = Pids(ws.root / "pids")
    path = _workspace(ws, SPAWNER, "spawner", pids.path)
    try:
        with WsmUp(ws, "-w", str(path), env=_env(ws, mode)) as up:
            up.wait_state("spawner", "ready")
            pids.wait(2)
            up.stop(signal.SIGKILL)
            pids.assert_all_gone(timeout=10)
    finally:
        pids.kill_all()


@pytest.mark.parametrize("mode", MODES)
def test_crash_is_seen_at_once_with_its_reason_and_its_tree_killed(
    ws: WorkspaceDir, mode: Dict[str, str]
) -> None:
    """The crasher: with 5 s heartbeats the exit is still seen within a second, blamed on
    the exit status, and its child holding the pipes is killed."""
    pids = Pids(ws.root / "pids")
    path = _workspace(
        ws,
        CRASHER,
        "crasher",
        pids.path,
        heartbeat_seconds=5,
        backoff_initial_seconds=5,
        backoff_max_seconds=5,
    )
    try:
        with WsmUp(ws, "-w", str(path), env=_env(ws, mode)) as up:
            loc = up.wait_state("crasher", "ready")
            loader = loc["pid"]
            [(_, child)] = pids.wait(1)
            ident = pids.known[loader]
            wait_for(lambda: not _alive(ident), 10, "the crash")
            died = time.monotonic()
            loc = up.wait_state("crasher", "backoff", timeout=10)
            seen = time.monotonic() - died
            assert seen < 2.0, f"the exit took {seen:.1f}s to be seen"  # heartbeats: ~12 s
            assert loc["pid"] is None
            assert "exited with status 1" in loc["error"], loc
            assert "heartbeat" not in loc["error"]
            code, _ = up.get("/readyz")
            assert code == 503
            wait_for(lambda: not _alive(pids.known[child]), 10, "the child holding the pipes")
    finally:
        pids.kill_all()


def _wsm() -> List[str]:
    from e2e import wsm_argv

    return wsm_argv()


SLOW_SETUP = """
import os, time
from setuptools import setup
with open(os.environ["PIDFILE"], "a") as f:
    f.write(f"{os.getppid()} {os.getpid()}\\n")
time.sleep(1005)
setup(name="slowbuild", version="1.0", py_modules=[])
"""


@pytest.mark.slow
def test_manager_sigkill_during_env_build_leaves_no_pip_or_setup_py(ws: WorkspaceDir) -> None:
    """pip builds a local source tree whose setup.py sleeps; `kill -9` of the manager then
    must take pip and the setup.py with it."""
    pids = Pids(ws.root / "pids")
    ws.file("app/slowbuild/setup.py", SLOW_SETUP)  # relative to the working directory
    ws.file("app/repo.py", "from workspace_manager import repository\n")
    path = ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "app/repo.py",
                        "location_name": "app",
                        "environment": {
                            "requirements": ["./slowbuild"],
                            "pip_args": ["--no-build-isolation", "--no-index"],
                        },
                    }
                }
            ]
        }
    )
    env = dict(ws.env, PIDFILE=str(pids.path))
    try:
        with WsmUp(ws, "-w", str(path), env=env) as up:
            [(pip, setup_py)] = pids.wait(1, timeout=90)
            assert _alive(pids.known[setup_py])
            up.stop(signal.SIGKILL)
            pids.assert_all_gone(timeout=10)
    finally:
        pids.kill_all()


@pytest.mark.slow
def test_memory_counts_shared_pages_once(ws: WorkspaceDir) -> None:
    """30 forked children sharing 16 MB with their parent: the PSS is ~20 MB, the sum of
    RSS over 500 MB. A 200 MB limit must not kill it, and /status shows the PSS."""
    code = """
    import os, signal, time
    PIDS = os.environ["PIDFILE"]
    block = bytearray(os.urandom(16 * 2**20))
    for _ in range(30):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(1006)
            os._exit(0)
        with open(PIDS, "a") as f:
            f.write(f"{os.getpid()} {pid}\\n")
    from workspace_manager import job, repository
    @job
    def noop(): ...
    @repository
    def forker_repo():
        return [noop]
    """
    pids = Pids(ws.root / "pids")
    path = _workspace(ws, code, "forker", pids.path, memory_limit_mb=200)
    try:
        with WsmUp(ws, "-w", str(path)) as up:
            up.wait_state("forker", "ready")
            pids.wait(30)
            rss = wait_for(lambda: up.location("forker")["rss_bytes"], 20, "a memory sample")
            time.sleep(3)  # several samples: two above the limit would restart it
            loc = up.location("forker")
            assert loc["state"] == "ready" and loc["restarts"] == 0, loc
            assert rss < 120 * 2**20, rss
            assert loc["rss_bytes"] > 16 * 2**20  # the shared block is counted once
        pids.assert_all_gone()
    finally:
        pids.kill_all()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-x", "-q"]))

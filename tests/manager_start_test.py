"""`wsm up` gets its locations going before it sets up the rest of itself, and many trivial
locations all get ready (a real `wsm up`, real processes; figures in bench/, not here)."""

from __future__ import annotations

import resource
import signal
import socket
from typing import Dict, Tuple

import psutil
import pytest
from e2e import WorkspaceDir, WsmUp, modules_in, probe_imports, wait_for

TRIVIAL = """
from workspace_manager import job, repository


@job
def hello():
    pass


@repository
def repo():
    return [hello]
"""


def trivial_workspace(ws: WorkspaceDir, n: int) -> None:
    """`n` locations `l0`..., each its own folder with a one-job repository."""
    entries = []
    for i in range(n):
        ws.file(f"l{i}/repo.py", TRIVIAL)
        entry: Dict[str, str] = {"relative_path": f"l{i}/repo.py", "location_name": f"l{i}"}
        entries.append({"python_file": entry})
    ws.workspace({"load_from": entries})


# Runs `wsm up --health 127.0.0.1:0` in-process and notes the modules loaded when the
# manager adds its first location; that location's start is the last thing it does.
PROBE = r"""
import json, sys
from workspace_manager.supervisor.manager import Manager
seen = []
real = Manager._add_location
def spy(self, config):
    if not seen:
        seen.append(sorted(sys.modules))
        self.request_stop()
    return real(self, config)
Manager._add_location = spy
from workspace_manager.cli.main import main
code = main(["up", "--health", "127.0.0.1:0", "--quiet-output"])
print("MODULES " + json.dumps([code, seen[0] if seen else None]))
"""


def test_locations_start_before_the_web_stack_and_the_metrics_are_imported(
    ws: WorkspaceDir,
) -> None:
    """The web stack (~90 ms), prometheus_client and the env builder are imported while the
    locations load, not before they start."""
    trivial_workspace(ws, 1)
    (code, modules), done = probe_imports(ws.root, PROBE)
    assert code == 0, done.stderr
    assert modules is not None, done.stdout + done.stderr
    heavy = ("uvicorn", "starlette", "httptools", "prometheus_client", "filelock", "jinja2")
    assert modules_in(modules, heavy) == []
    # nor the run coordinator and run plans: the records open after the first spawns
    assert "workspace_manager.runs.coordinator" not in modules
    assert "workspace_manager.web.server" not in modules
    assert "workspace_manager.envs.build" not in modules


# Notes, as the manager turns to its own set-up (its run records first, then the web
# stack), whether its first location's process (or its fork server's) already runs.
SPAWN_PROBE = r"""
import json, sys
from workspace_manager.supervisor.workload import Workload
seen = []
real = Workload.open
async def spy(self):
    manager = self.manager
    loc = next(iter(manager.locations.values()))
    forks = manager._forks.servers if manager._forks is not None else []
    seen.append([loc.state.value, loc.pid, [server.pid for server in forks]])
    manager.request_stop()
    return await real(self)
Workload.open = spy
from workspace_manager.cli.main import main
code = main(["up", "--health", "127.0.0.1:0", "--quiet-output"])
print("MODULES " + json.dumps([code, seen[0] if seen else None]))
"""


@pytest.mark.parametrize("forkserver", ["on", "off"])
def test_the_first_location_runs_before_the_web_stack_is_imported(
    ws: WorkspaceDir, forkserver: str
) -> None:
    """Its plan and spawn each need a turn of the loop: the manager gives them those turns
    before its own ~100 ms of imports, so the location's interpreter (or its fork server's,
    which then forks it at once) starts beside them."""
    trivial_workspace(ws, 1)
    env_var = "" if forkserver == "on" else "import os; os.environ['WSM_FORKSERVER'] = 'off'\n"
    (code, seen), done = probe_imports(ws.root, env_var + SPAWN_PROBE)
    assert code == 0, done.stderr
    assert seen is not None, done.stdout + done.stderr
    state, pid, servers = seen
    assert state in ("starting", "ready"), seen
    if forkserver == "on":
        assert len(servers) == 1 and isinstance(servers[0], int), seen
    else:
        assert isinstance(pid, int) and servers == [], seen


def test_a_taken_health_port_fails_before_any_location_starts(ws: WorkspaceDir) -> None:
    marker = ws.root / "imported"
    ws.file("repo.py", TRIVIAL + f"\nopen({str(marker)!r}, 'w').close()\n")
    ws.workspace({"load_from": [{"python_file": {"relative_path": "repo.py"}}]})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = ws.run("up", "--health", f"127.0.0.1:{port}", timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"--health 127.0.0.1:{port}:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()  # no location was started


def _ready(up: WsmUp) -> bool:
    """/readyz answers 200; a request the manager could not take yet (its loop busy with
    1,000 starts) is asked again."""
    up.track()
    try:
        return up.get("/readyz")[0] == 200
    except OSError:
        return False


def _trivial_up(ws: WorkspaceDir, n: int, timeout: float) -> None:
    trivial_workspace(ws, n)
    with WsmUp(ws, "--quiet-output") as up:
        wait_for(lambda: _ready(up), timeout, f"all {n} locations ready")
        st = up.status()
        bad = {k: v["error"] for k, v in st["locations"].items() if v["state"] != "ready"}
        assert bad == {}
        assert len(st["locations"]) == n
        code, body = up.get("/readyz")
        assert code == 200, body
        code, _ = up.get("/livez")
        assert code == 200
        pids = {v["pid"] for v in st["locations"].values()}
        assert len(pids) == n and None not in pids
        up.track()
        assert up.stop(timeout=max(30.0, n * 0.2)) == 0  # 1,000 stops take a while here
    # leaving the block checked that every process of the run is gone


def test_sixty_trivial_locations_all_get_ready(ws: WorkspaceDir) -> None:
    """Many starts at once, from worker threads: none is taken for an orphan and killed
    (it read as "exited with status 0 while loading"), none waits on another."""
    _trivial_up(ws, 60, timeout=240)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # ~90 s to all ready on this 2-core machine, shared
def test_a_thousand_trivial_locations_all_get_ready(ws: WorkspaceDir) -> None:
    """1,000 locations: ~5 descriptors each, beyond a default soft limit of 1,024."""
    _trivial_up(ws, 1000, timeout=900)


def test_kill_of_the_manager_while_locations_start_leaves_nothing(ws: WorkspaceDir) -> None:
    """SIGKILL of the manager in the middle of many starts (some still in their worker
    thread): every process it started goes (the lifeline), none is left behind."""
    trivial_workspace(ws, 30)
    up = WsmUp(ws, "--quiet-output")
    try:
        wait_for(lambda: len(up.track()) >= 5, 120, "some locations to start")
        up.track()
        up.proc.send_signal(signal.SIGKILL)
        up.proc.wait(30)
        up.assert_no_leftovers(timeout=30)
    finally:
        if up.proc.poll() is None:
            up.stop()


def _nofile(pid: int) -> Tuple[int, int]:
    soft, hard = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)
    return soft, hard


def test_the_manager_raises_its_open_file_limit_and_its_locations_keep_the_users(
    ws: WorkspaceDir,
) -> None:
    """1,000 locations need ~6,000 descriptors in the manager; a location's code (select(2))
    keeps the soft limit it was given."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 512:
        pytest.skip("the hard open-file limit here is too low to test a raise")
    low = 256
    trivial_workspace(ws, 2)

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))  # what `wsm up` inherits
    try:
        up = WsmUp(ws, "--quiet-output")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with up:
        st = up.wait_all_settled(timeout=120)
        assert _nofile(up.proc.pid) == (hard, hard)
        for loc in st["locations"].values():
            assert loc["state"] == "ready"
            assert _nofile(loc["pid"]) == (low, hard)

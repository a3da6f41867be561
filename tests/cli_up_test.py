"""`wsm up` end to end: real processes under two interpreters, real sockets, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import psutil
import pytest
from e2e import WorkspaceDir, WsmUp, wait_for, wsm_argv

from workspace_manager.protocol.client import Client
from workspace_manager.protocol.errors import RemoteError

DEBIAN_PYTHON = "/usr/bin/python3"

REPO_A = """
import os, sys
from workspace_manager import RunRequest, ScheduleDefinition, SkipReason, job, repository, sensor

@job
def job1(): ...

@job(description="second", tags={"team": "a"})
def job2(context):
    return context.run_config

job1_schedule = ScheduleDefinition(job=job1, cron_schedule="0 0 * * *")

@sensor(job=job2)
def probe(context):
    found = {}
    for name in ("msgpack", "psutil", "yaml", "jsonschema", "virtualenv"):
        try:
            __import__(name)
            found[name] = True
        except ImportError:
            found[name] = False
    yield RunRequest(run_key=None, run_config={
        "imports": found, "executable": sys.executable, "team": os.environ.get("TEAM", ""),
        "cwd": os.getcwd()})

@sensor(job=job2)
def slow_sensor():
    import time
    print("slow sensor started", flush=True)
    time.sleep(5)
    return SkipReason("slept")

print("team_a loaded and printing to stdout")
print("and to stderr", file=sys.stderr)

@repository
def repo_a():
    return [job1, job1_schedule, probe, slow_sensor]
"""

REPO_B = """
from workspace_manager import job, repository

@job
def b_job(): ...

@repository
def repo_b():
    return [b_job]
"""

PACKAGE_C = """
from workspace_manager import job, repository, sensor, RunRequest

@job
def c_job(): ...

@sensor(job=c_job)
def c_sensor(context):
    context.update_cursor((context.cursor or "") + "x")
    yield RunRequest(run_key="k1")

@repository
def repo_c():
    return [c_job, c_sensor]
"""


def teams_entries() -> list:
    """team_a on Debian's python (a file), team_b (a module), team_c (a package)."""
    return [
        {
            "python_file": {
                "relative_path": "team_a/repo.py",
                "location_name": "team_a",
                "executable_path": DEBIAN_PYTHON,
                "env_vars": {"TEAM": "a"},
            }
        },
        {
            "python_module": {
                "module_name": "team_b.definitions",
                "location_name": "team_b",
                "working_directory": "team_b",
            }
        },
        {
            "python_package": {
                "package_name": "team_c_pipelines",
                "location_name": "team_c",
                "working_directory": "team_c",
            }
        },
    ]


def teams_workspace(ws: WorkspaceDir, broken: bool = False) -> Path:
    ws.file("team_a/repo.py", REPO_A)
    ws.file("team_b/team_b/__init__.py", "")
    ws.file("team_b/team_b/definitions.py", REPO_B)
    ws.file("team_c/team_c_pipelines/__init__.py", PACKAGE_C)
    entries = teams_entries()
    if broken:
        ws.file("broken/repo.py", "import does_not_exist_anywhere\n")
        entries.append({"python_file": {"relative_path": "broken/repo.py"}})
    return ws.workspace({"load_from": entries, "supervision": {"heartbeat_seconds": 1}})


def bare_imports(python: str, names: list) -> dict:
    code = (
        "import importlib.util, json, sys; "
        "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in sys.argv[1:]}))"
    )
    out = subprocess.run([python, "-c", code, *names], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def manager_client(ws: WorkspaceDir) -> Client:
    """A protocol client on the running manager's control socket, found as the CLI does."""
    records = list((ws.root / ".wsm-run").glob("*/manager.json"))
    assert len(records) == 1, records
    record = json.loads(records[0].read_text())
    return Client(record["control"], record["secret"], timeout=30)


def test_up_serves_every_location_in_its_own_interpreter(ws: WorkspaceDir) -> None:
    path = teams_workspace(ws, broken=True)
    with WsmUp(ws, "-w", str(path)) as up:
        status = up.wait_all_settled()
        locs = status["locations"]
        assert {n: loc["state"] for n, loc in locs.items()} == {
            "team_a": "ready",
            "team_b": "ready",
            "team_c": "ready",
            "repo": "error",
        }
        assert status["status"] == "degraded"
        assert locs["team_a"]["python"] == "3.11.2"  # Debian's interpreter
        assert locs["team_a"]["environment"] == DEBIAN_PYTHON
        assert locs["team_b"]["python"] != "3.11.2"
        assert "does_not_exist_anywhere" in locs["repo"]["error"]
        assert "Traceback" in locs["repo"]["traceback"]
        pids = {locs[n]["pid"] for n in ("team_a", "team_b", "team_c")}
        assert len(pids) == 3 and os.getpid() not in pids
        assert psutil.Process(locs["team_a"]["pid"]).exe() == os.path.realpath(DEBIAN_PYTHON)

        code, body = up.get("/readyz")
        assert code == 503 and "repo" in body
        code, body = up.get("/readyz?verbose")
        assert "[+]team_a ok" in body and "[-]repo error" in body
        assert up.get("/readyz/team_b")[0] == 200
        assert up.get("/readyz/repo")[0] == 503
        assert up.get("/livez") == (200, "ok") or up.get("/livez")[0] == 200
        assert up.get("/healthz")[0] == 200

        with manager_client(ws) as client:
            result = client.call(
                "call",
                {"location": "team_a", "method": "evaluate_sensor", "params": {"sensor": "probe"}},
            )
            config = result["run_requests"][0]["run_config"]
            # wsm injects none of its dependencies into another interpreter
            # wsm injects none of its dependencies: the location sees exactly what the bare
            # interpreter has (Debian ships python3-yaml, but no msgpack or psutil)
            assert config["imports"] == bare_imports(DEBIAN_PYTHON, list(config["imports"]))
            assert config["imports"]["msgpack"] is False
            assert config["imports"]["psutil"] is False
            assert config["executable"] == DEBIAN_PYTHON
            assert config["team"] == "a"
            assert config["cwd"] == str(ws.root / "team_a")
            c = client.call(
                "call",
                {
                    "location": "team_c",
                    "method": "evaluate_sensor",
                    "params": {"sensor": "c_sensor", "cursor": "ab"},
                },
            )
            assert c["cursor"] == "abx" and c["run_requests"][0]["run_key"] == "k1"
            snap = client.call("snapshot", {"location": "team_a"})
            repo = snap["repositories"][0]
            assert [j["name"] for j in repo["jobs"]] == ["job1", "job2"]
            assert repo["schedules"][0]["cron_schedule"] == "0 0 * * *"
            with pytest.raises(RemoteError) as err:
                client.call("call", {"location": "repo", "method": "ping"})
            assert err.value.type == "NotReady"

        # a slow call in flight does not delay a ping on the same location
        order = []

        def slow() -> None:
            with manager_client(ws) as c2:
                c2.call(
                    "call",
                    {
                        "location": "team_a",
                        "method": "evaluate_sensor",
                        "params": {"sensor": "slow_sensor"},
                    },
                )
            order.append("slow")

        t = threading.Thread(target=slow)
        t.start()
        # the slow call is running inside the location before the ping is sent
        wait_for(lambda: "slow sensor started" in up.output(), 10, "the slow sensor to start")
        with manager_client(ws) as client:
            client.call("call", {"location": "team_a", "method": "ping"})
        order.append("ping")
        t.join(30)
        assert order == ["ping", "slow"]

        # the repository's prints reach the location log and the manager's output
        wait_for(lambda: "team_a loaded and printing to stdout" in up.output(), 10, "output")
        logs = ws.run("logs", "-w", str(path), "team_a")
        assert logs.returncode == 0 and "and to stderr" in logs.stdout

        st = ws.run("status", "-w", str(path), "--json")
        assert st.returncode == 0, st.stderr
        assert json.loads(st.stdout)["locations"]["team_b"]["state"] == "ready"
        table = ws.run("status", "-w", str(path))
        assert "team_a" in table.stdout and "ready" in table.stdout

        down = ws.run("down", "-w", str(path))
        assert down.returncode == 0, down.stderr
        assert up.proc.wait(30) == 0
    assert not (ws.root / ".wsm-run" / "manager.json").exists()
    assert ws.run("status", "-w", str(path)).returncode == 3


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_everything_with_exit_0(ws: WorkspaceDir, sig: int) -> None:
    path = teams_workspace(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_all_settled()
        up.track()
        assert up.stop(sig) == 0
    assert not list((ws.root / ".wsm-run").glob("*/*.sock"))


def test_manager_killed_with_sigkill_leaves_no_process(ws: WorkspaceDir) -> None:
    ws.file(
        "spawner/repo.py",
        """
        import subprocess, sys
        from workspace_manager import job, repository
        # a grandchild that ignores SIGTERM
        CHILD = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        @job
        def j(): ...
        @repository
        def r():
            return [j]
    """,
    )
    path = ws.workspace({"load_from": [{"python_file": "spawner/repo.py"}]})
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_state("repo", "ready")
        pids = up.track()
        assert len(pids) >= 2  # the loader and its grandchild
        up.proc.kill()
        up.proc.wait(10)
        up.assert_no_leftovers(timeout=5)


def test_crashed_location_is_restarted_with_backoff(ws: WorkspaceDir) -> None:
    path = teams_workspace(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_all_settled()
        before = up.location("team_b")
        os.kill(before["pid"], signal.SIGKILL)
        after = wait_for(
            lambda: (
                lambda loc: (
                    loc
                    if loc["state"] == "ready" and loc["pid"] not in (None, before["pid"])
                    else None
                )
            )(up.location("team_b")),
            30,
            "team_b to come back",
        )
        assert after["restarts"] == 1
        st = json.loads(ws.run("status", "-w", str(path), "--json").stdout)
        transitions = st["locations"]["team_b"]["transitions"]
        assert [t["to"] for t in transitions[-3:]] == ["backoff", "starting", "ready"]
        assert "SIGKILL" in transitions[-3]["reason"]
        assert up.location("team_a")["restarts"] == 0


def test_up_with_python_file_and_module(ws: WorkspaceDir) -> None:
    ws.file("single.py", REPO_B)
    with WsmUp(ws, "-f", "single.py", "-a", "repo_b") as up:
        status = up.wait_all_settled()
        assert status["locations"]["single"]["state"] == "ready"
        st = ws.run("status", "--python-file", "single.py", "-a", "repo_b", "--json")
        assert st.returncode == 0, st.stderr
    ws.file("pkgmod/__init__.py", "")
    ws.file("pkgmod/defs.py", REPO_B)
    with WsmUp(ws, "-m", "pkgmod.defs") as up:
        status = up.wait_all_settled()
        assert status["locations"]["pkgmod.defs"]["state"] == "ready"


def test_list_reports_broken_locations_and_exit_status(ws: WorkspaceDir) -> None:
    path = teams_workspace(ws, broken=True)
    res = ws.run("list", "-w", str(path), "--json")
    assert res.returncode == 1, res.stderr
    data = json.loads(res.stdout)["locations"]
    assert data["repo"]["state"] == "error"
    assert "does_not_exist_anywhere" in data["repo"]["traceback"]
    assert [r["name"] for r in data["team_c"]["repositories"]] == ["repo_c"]
    human = ws.run("list", "-w", str(path))
    assert "repository repo_a" in human.stdout and "job1_schedule" in human.stdout
    good = teams_workspace(ws)
    assert ws.run("list", "-w", str(good)).returncode == 0
    # nothing of the one-shot load is left running
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(ws.root) in " ".join(p.info["cmdline"] or [])
    ]


def test_reload_restarts_only_what_changed(ws: WorkspaceDir) -> None:
    path = teams_workspace(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        first = up.wait_all_settled()["locations"]
        ws.file("team_d/repo.py", REPO_B)
        team_a, team_b, _team_c = teams_entries()  # team_c removed
        team_b["python_module"]["env_vars"] = {"NEW": "1"}  # team_b changed
        team_d = {"python_file": {"relative_path": "team_d/repo.py", "location_name": "team_d"}}
        data = {"load_from": [team_a, team_b, team_d], "supervision": {"heartbeat_seconds": 1}}
        ws.workspace(data)
        res = ws.run("reload", "-w", str(path))
        assert res.returncode == 0, res.stderr
        assert "team_d" in res.stdout
        now = up.wait_all_settled()["locations"]
        assert set(now) == {"team_a", "team_b", "team_d"}
        assert now["team_a"]["pid"] == first["team_a"]["pid"]  # untouched keeps serving
        assert now["team_b"]["pid"] != first["team_b"]["pid"]  # changed: restarted
        assert (
            not psutil.pid_exists(first["team_c"]["pid"])
            or psutil.Process(first["team_c"]["pid"]).status() == psutil.STATUS_ZOMBIE
        )
        # a bad edit is refused and changes nothing
        (ws.root / "workspace.yaml").write_text("load_from: [ {python_file: nope.py} ]\n")
        bad = ws.run("reload", "-w", str(path))
        assert bad.returncode == 2 and "nope.py" in bad.stderr
        assert up.location("team_a")["pid"] == first["team_a"]["pid"]


def test_up_with_invalid_workspace_exits_2_without_traceback(ws: WorkspaceDir) -> None:
    path = ws.workspace("load_from:\n  - python_file: missing.py\n")
    res = ws.run("up", "-w", str(path))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith(f"{path}:2:")


SAMPLES = Path(__file__).resolve().parent.parent / "sample_workspaces"


def test_quick_start_sample_workspace(ws: WorkspaceDir) -> None:
    """The README's quick start: the teams sample, offline, every location ready."""
    path = SAMPLES / "teams" / "workspace.yaml"
    assert ws.run("validate", "-w", str(path)).returncode == 0
    with WsmUp(ws, "-w", str(path)) as up:
        status = up.wait_all_settled()
        assert {loc["state"] for loc in status["locations"].values()} == {"ready"}
        assert status["status"] == "ok"
        assert up.get("/readyz") == (200, "ok") or up.get("/readyz")[0] == 200
        pythons = {loc["python"] for loc in status["locations"].values()}
        assert "3.11.2" in pythons and len(pythons) == 2  # Debian's and wsm's own
        with manager_client(ws) as client:
            for name in status["locations"]:
                snap = client.call("snapshot", {"location": name})
                for repo in snap["repositories"]:
                    for sensor in repo["sensors"]:
                        if sensor["name"] == "slow_sensor" or sensor["sensor_type"] != "standard":
                            continue  # slow on purpose; a run status sensor is given runs
                        result = client.call(
                            "call",
                            {
                                "location": name,
                                "method": "evaluate_sensor",
                                "params": {"repository": repo["name"], "sensor": sensor["name"]},
                            },
                        )
                        assert "run_requests" in result
        assert ws.run("down", "-w", str(path)).returncode == 0
        assert up.proc.wait(30) == 0


def test_failed_env_build_errors_only_its_location(ws: WorkspaceDir) -> None:
    ws.file("ok/repo.py", REPO_B)
    ws.file("needs/repo.py", REPO_B)
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "ok/repo.py", "location_name": "fine"}},
                {
                    "python_file": {
                        "relative_path": "needs/repo.py",
                        "location_name": "needs_missing",
                        "environment": {
                            "requirements": ["no-such-package-wsm-test==1.0"],
                            "pip_args": ["--no-index"],
                        },
                    }
                },
            ]
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        status = up.wait_all_settled(timeout=180)
        assert status["locations"]["fine"]["state"] == "ready"
        bad = status["locations"]["needs_missing"]
        assert bad["state"] == "error"
        assert "no-such-package-wsm-test" in bad["error"]
        assert "full log:" in bad["error"]
        assert bad["traceback"] and "no-such-package-wsm-test" in bad["traceback"]  # pip's tail


def running_site_dirs() -> list:
    """The site-packages folders of the interpreter running the tests (where wsm is installed)."""
    paths = sysconfig.get_paths()
    return sorted({paths["purelib"], paths["platlib"]})


def test_location_without_env_shares_the_packages_of_wsms_virtualenv(ws: WorkspaceDir) -> None:
    """wsm installed in a virtualenv: a plain location runs on that venv's python (not the
    base interpreter behind its symlink) and sees the venv's packages, as `dagit -f` does.

    The venv is layered on the interpreter running the tests (a .pth adds its site dirs,
    their own .pth files included, so an editable or a wheel install of wsm alike), which
    works whether the tests run in a virtualenv or on a base interpreter."""
    venv = ws.root / "venv"
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "wsm_tests_layer.pth").write_text(
        "".join(f"import site; site.addsitedir({d!r})\n" for d in running_site_dirs())
    )
    Path(purelib, "only_in_this_venv.py").write_text("VALUE = 1\n")  # as if pip-installed
    ws.file(
        "uses_venv.py",
        """
        import only_in_this_venv
        from workspace_manager import job, repository
        @job
        def j(): ...
        @repository
        def r():
            return [j]
    """,
    )
    res = subprocess.run(
        [str(python), "-m", "workspace_manager.cli.main", "list", "--json", "-f", "uses_venv.py"],
        cwd=ws.root,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    loc = json.loads(res.stdout)["locations"]["uses_venv"]
    assert loc["state"] == "ready"
    assert loc["executable"] == str(python)


def test_logs_follow_prints_new_lines(ws: WorkspaceDir) -> None:
    ws.file(
        "ticker.py",
        """
        import threading, time
        from workspace_manager import job, repository
        def tick():
            n = 0
            while True:
                n += 1
                print(f"tick {n}", flush=True)
                time.sleep(0.2)
        threading.Thread(target=tick, daemon=True).start()
        @job
        def j(): ...
        @repository
        def r():
            return [j]
    """,
    )
    path = ws.workspace({"load_from": [{"python_file": "ticker.py"}]})
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_state("ticker", "ready")
        follower = subprocess.Popen(
            wsm_argv("logs", "-w", str(path), "ticker", "-F", "-n", "1"),
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert follower.stdout is not None
            seen = []
            for line in follower.stdout:
                seen.append(line.strip())
                if len([s for s in seen if s.startswith("tick")]) >= 5:
                    break
            ticks = [int(s.split()[1]) for s in seen if s.startswith("tick")]
            assert ticks == sorted(ticks) and ticks[-1] - ticks[0] >= 3  # new lines arrived
        finally:
            follower.terminate()
            follower.wait(10)


def test_error_location_is_retried_when_its_code_changes(ws: WorkspaceDir) -> None:
    ws.file("fixme/repo.py", "raise RuntimeError('not yet')\n")
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "fixme/repo.py", "location_name": "fixme"}}
            ]
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        assert "not yet" in up.wait_state("fixme", "error")["error"]
        ws.file("fixme/repo.py", REPO_B)  # the team fixes its code; nobody runs wsm reload
        loc = up.wait_state("fixme", "ready", timeout=30)
        assert loc["restarts"] == 0
        assert "its code changed" in up.output()


def test_two_managers_for_two_workspaces_and_no_second_for_the_same(ws: WorkspaceDir) -> None:
    ws.file("one/repo.py", REPO_B)
    ws.file("two/repo.py", REPO_B)
    one = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "one/repo.py", "location_name": "first"}}
            ]
        },
        "one.yaml",
    )
    two = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "two/repo.py", "location_name": "second"}}
            ]
        },
        "two.yaml",
    )
    with WsmUp(ws, "-w", str(one)) as up1, WsmUp(ws, "-w", str(two)) as up2:
        up1.wait_state("first", "ready")
        up2.wait_state("second", "ready")
        s1 = json.loads(ws.run("status", "-w", str(one), "--json").stdout)
        s2 = json.loads(ws.run("status", "-w", str(two), "--json").stdout)
        assert list(s1["locations"]) == ["first"] and s1["pid"] == up1.proc.pid
        assert list(s2["locations"]) == ["second"] and s2["pid"] == up2.proc.pid
        again = ws.run("up", "-w", str(one))
        assert again.returncode == 1 and "already running" in again.stderr
        assert "starting" not in again.stdout + again.stderr  # refused before it says so
        assert ws.run("down", "-w", str(two)).returncode == 0
        assert up2.proc.wait(30) == 0
        assert up1.location("first")["state"] == "ready"  # the other manager is untouched


def test_two_managers_started_at_once_for_one_workspace_one_wins(ws: WorkspaceDir) -> None:
    ws.file("repo.py", REPO_B)
    path = ws.workspace({"load_from": [{"python_file": "repo.py"}]})
    procs = [
        subprocess.Popen(
            wsm_argv("up", "-w", str(path)),
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        loser = wait_for(
            lambda: next((p for p in procs if p.poll() is not None), None),
            60,
            "one of the two managers to give up",
        )
        assert loser.returncode == 1
        assert "already running" in loser.stderr.read()
        winner = next(p for p in procs if p is not loser)
        assert winner.poll() is None
        st = ws.run("status", "-w", str(path), "--json")
        assert json.loads(st.stdout)["pid"] == winner.pid
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                assert p.wait(30) == 0

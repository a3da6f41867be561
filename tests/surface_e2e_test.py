"""The surface of runs on a real `wsm up`: launch through the JSON API, read the run with
`wsm run list|show|logs`, see it in /status, /metrics and the JSON console, cancel it with
`wsm run cancel`; then read the records again with no manager running."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any, Dict, Optional, Tuple

from e2e import WorkspaceDir, WsmUp, wait_for

REPO = """
import sys, time
from workspace_manager import job, repository

@job
def hello(context):
    print("printed line", flush=True)
    context.log.warning("config %s", context.run_config)
    print("an error line", file=sys.stderr, flush=True)

@job
def boom():
    raise ValueError("the job broke")

@job
def sleeper(context):
    print("sleeping", flush=True)
    time.sleep(600)

@repository
def repo():
    return [hello, boom, sleeper]
"""


def api(up: WsmUp, method: str, path: str, body: Any = None) -> Tuple[int, Dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def wait_run(up: WsmUp, run_id: str, *statuses: str) -> Dict[str, Any]:
    def check() -> Optional[Dict[str, Any]]:
        code, run = api(up, "GET", f"/api/runs/{run_id}")
        return run if code == 200 and run["status"] in statuses else None

    return wait_for(check, 60, f"run {run_id} to be {'/'.join(statuses)}")


def test_runs_through_the_api_the_cli_status_metrics_and_console(ws: WorkspaceDir) -> None:
    ws.file("repo.py", REPO)
    path = ws.workspace(
        {"load_from": [{"python_file": {"relative_path": "repo.py", "location_name": "team"}}]}
    )
    w = ["-w", str(path)]
    with WsmUp(ws, *w, "--log-format", "json") as up:
        up.wait_state("team", "ready")
        wait_for(lambda: up.status()["daemon"] is not None, 30, "the run storage to be open")
        code, run = api(
            up, "POST", "/api/runs", {"location": "team", "job": "hello", "run_config": {"n": 1}}
        )
        assert code == 201, run
        done = wait_run(up, run["run_id"], "SUCCESS", "FAILURE")
        assert done["status"] == "SUCCESS", done
        assert done["origin"]["via"] == "api"
        code, failed = api(up, "POST", "/api/runs", {"location": "team", "job": "boom"})
        failed = wait_run(up, failed["run_id"], "FAILURE")
        assert "ValueError" in failed["traceback"]

        # the CLI, while the manager runs
        listing = ws.run("run", "list", *w)
        assert listing.returncode == 0, listing.stderr
        rows = listing.stdout.splitlines()[1:]
        assert [r.split()[:2] for r in rows] == [
            [failed["run_id"][:12], "FAILURE"],
            [run["run_id"][:12], "SUCCESS"],
        ]
        logs = ws.run("run", "logs", run["run_id"][:8], *w)
        texts = [line.split(None, 2)[1:] for line in logs.stdout.splitlines()]
        assert ["stdout", "printed line"] in texts and ["stderr", "an error line"] in texts
        assert ["WARNING", "config {'n': 1}"] in texts
        show = ws.run("run", "show", failed["run_id"], *w)
        assert "ValueError: the job broke" in show.stdout and "traceback" in show.stdout

        # a run to follow and cancel
        code, slow = api(up, "POST", "/api/runs", {"location": "team", "job": "sleeper"})
        wait_run(up, slow["run_id"], "STARTED")
        status = up.status()
        assert status["daemon"]["in_progress"] == 1
        wait_for(lambda: up.status()["daemon"]["runs"].get("SUCCESS") == 1, 20, "run counts")
        metrics = up.get("/metrics")[1]
        assert "wsm_runs_in_progress 1.0" in metrics
        assert 'wsm_runs{status="FAILURE"} 1.0' in metrics
        assert 'wsm_run_duration_seconds_count{location="team",status="SUCCESS"} 1.0' in metrics
        text = ws.run("status", *w)
        assert "runs: " in text.stdout and "in progress 1" in text.stdout

        import subprocess

        from e2e import wsm_argv

        follower = subprocess.Popen(
            wsm_argv("run", "logs", slow["run_id"], "--follow", *w),
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        cancel = ws.run("run", "cancel", slow["run_id"][:10], *w)
        assert cancel.returncode == 0, cancel.stderr
        wait_run(up, slow["run_id"], "CANCELED")
        out, _ = follower.communicate(timeout=30)  # --follow ends with the run
        assert follower.returncode == 0 and "sleeping" in out

        events = [json.loads(line) for line in up.lines if line.startswith("{")]
        mine = [
            (e["status"]) for e in events if e["event"] == "run" and e["run_id"] == run["run_id"]
        ]
        assert mine[0] == "queued" and mine[-1] == "success" and "started" in mine
    # no manager: the records are still there
    started = time.monotonic()
    listing = ws.run("run", "list", "--json", *w)
    assert listing.returncode == 0 and len(json.loads(listing.stdout)) == 3
    assert time.monotonic() - started < 30
    cancel = ws.run("run", "cancel", "abcdef", *w)
    assert cancel.returncode == 1 and "abcdef" in cancel.stderr


SENSORS = """
from workspace_manager import (
    DefaultSensorStatus, RunRequest, ScheduleDefinition, SkipReason, job, repository, sensor,
)

@job
def work(context):
    print("working", flush=True)

@sensor(job=work, minimum_interval_seconds=1, default_status=DefaultSensorStatus.RUNNING)
def files(context):
    n = int(context.cursor or 0)
    context.update_cursor(str(n + 1))
    if n == 0:
        yield RunRequest(run_key="first")
    else:
        yield SkipReason("nothing new")

@sensor(job=work, minimum_interval_seconds=1)
def quiet(context):
    yield SkipReason("never started")

nightly = ScheduleDefinition(name="nightly", job=work, cron_schedule="30 2 * * *",
                             execution_timezone="Europe/Berlin")

@repository
def repo():
    return [work, files, quiet, nightly]
"""


def launched_prefix(ws: WorkspaceDir, w: Any) -> str:
    (tick,) = [
        t
        for t in json.loads(ws.run("sensor", "ticks", "files", "--json", *w).stdout)
        if t["status"] == "success"
    ]
    return tick["run_ids"][0][:12]


def test_schedules_and_sensors_through_the_cli_the_api_metrics_and_console(
    ws: WorkspaceDir,
) -> None:
    ws.file("repo.py", SENSORS)
    path = ws.workspace(
        {"load_from": [{"python_file": {"relative_path": "repo.py", "location_name": "team"}}]}
    )
    w = ["-w", str(path)]
    with WsmUp(ws, *w, "--log-format", "json") as up:
        up.wait_state("team", "ready")

        def skipped_once() -> bool:
            code, page = api(up, "GET", "/api/sensors/team:files/ticks")
            return code == 200 and any(t["status"] == "skipped" for t in page["items"])

        wait_for(skipped_once, 60, "the sensor to tick twice")
        listing = ws.run("sensor", "list", *w)
        assert listing.returncode == 0, listing.stderr
        rows = {r.split()[0]: r for r in listing.stdout.splitlines()[1:]}
        assert rows["files"].split()[1:3] == ["team", "RUNNING"] and "every 1s" in rows["files"]
        assert rows["quiet"].split()[2] == "STOPPED"
        schedules = ws.run("schedule", "list", "--json", *w)
        (nightly,) = json.loads(schedules.stdout)
        assert nightly["name"] == "nightly" and nightly["status"] == "STOPPED"
        assert nightly["cron_schedule"] == "30 2 * * *"

        started = ws.run("schedule", "start", "team:nightly", *w)
        assert started.returncode == 0 and started.stdout == "schedule team:nightly: RUNNING\n"
        (row,) = ws.run("schedule", "list", *w).stdout.splitlines()[1:]
        assert "30 2 * * * (Europe/Berlin)" in row and ":30:00" in row  # its next tick
        code, item = api(up, "POST", "/api/sensors/files/stop", {})
        assert code == 200 and item["status"] == "STOPPED"
        code, page = api(up, "GET", "/api/sensors")
        assert {i["name"]: i["status"] for i in page["items"]} == {
            "files": "STOPPED",
            "quiet": "STOPPED",
        }
        unknown = ws.run("sensor", "start", "nope", *w)
        assert unknown.returncode == 1 and unknown.stderr.startswith("wsm: ")
        assert "nope" in unknown.stderr and "Traceback" not in unknown.stderr

        ticks = ws.run("sensor", "ticks", "files", *w)
        assert ticks.returncode == 0
        rows = ticks.stdout.splitlines()[1:]
        assert any("skipped: nothing new" in r for r in rows)
        assert rows[-1].split()[2:] == ["team", "success:", "1", "run", launched_prefix(ws, w)]

        metrics = up.get("/metrics")[1]
        assert 'wsm_ticks_total{kind="sensor",result="success"} 1.0' in metrics
        assert 'wsm_ticks_total{kind="sensor",result="skipped"}' in metrics
        assert up.status()["daemon"]["enabled"] is True
        assert up.status()["daemon"]["last_loop"] is not None
        events = [json.loads(ln) for ln in up.lines if ln.startswith("{")]
        sensor_ticks = [e for e in events if e["event"] == "tick" and e["name"] == "files"]
        assert sensor_ticks[0]["result"] == "success" and len(sensor_ticks[0]["run_ids"]) == 1
        launched = sensor_ticks[0]["run_ids"][0]
        run_events = [e for e in events if e["event"] == "run" and e["run_id"] == launched]
        assert run_events[0]["origin"]["kind"] == "sensor"
        assert run_events[0]["origin"]["name"] == "files"
    show = ws.run("run", "show", launched, *w)
    assert "origin      sensor files (tick " in show.stdout and "run_key first" in show.stdout

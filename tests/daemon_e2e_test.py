"""The daemon in the real `wsm up`: a sensor whose run_keys dedupe across a manager
restart, its cursor kept; `default_status` honored; start/stop through the control socket
and kept; `--no-daemon`; a schedule firing on a real minute boundary (slow suite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from e2e import WorkspaceDir, WsmUp, control_call, manager_key, wait_for

from workspace_manager.protocol.errors import RemoteError
from workspace_manager.storage.records import RunRecord, TickRecord
from workspace_manager.storage.sqlite import SqliteStorage

REPO = """
import os, time
from workspace_manager import (
    DefaultSensorStatus, RunRequest, ScheduleDefinition, job, repository, run_failure_sensor,
    sensor,
)

NOTES = os.environ["NOTES"]

@job
def work(context):
    with open(os.path.join(NOTES, "work"), "a") as f:
        f.write(context.run_id + "\\n")

@sensor(job=work, minimum_interval_seconds=1, default_status=DefaultSensorStatus.RUNNING)
def files(context):
    n = int(context.cursor or 0)
    context.update_cursor(str(n + 1))
    # the same two keys every time: each may launch once, ever
    yield RunRequest(run_key="k1")
    yield RunRequest(run_key="k2")

@sensor(job=work, minimum_interval_seconds=1)
def stopped_by_default(context):
    yield RunRequest(run_key="never")

every_minute = ScheduleDefinition(
    name="every_minute",
    job=work,
    cron_schedule="* * * * *",
    default_status=os.environ.get("SCHEDULE_STATUS"),
)

@job
def fails():
    raise ValueError("broken on purpose")

@run_failure_sensor(request_job=work, default_status=os.environ.get("ALERT_STATUS"))
def alert(context):
    with open(os.path.join(NOTES, "alerts"), "a") as f:
        f.write(context.dagster_run.run_id + " " + context.failure_event.message + "\\n")
    return RunRequest(run_key="alert-" + context.dagster_run.run_id)

@repository
def repo():
    return [work, fails, files, stopped_by_default, every_minute, alert]
"""


def make(
    ws: WorkspaceDir,
    schedule_status: str = "STOPPED",
    daemon: Optional[Dict[str, Any]] = None,
    alert_status: str = "STOPPED",
) -> None:
    ws.file("code/daemon_repo.py", REPO)
    notes = ws.root / "notes"
    notes.mkdir(exist_ok=True)
    entry = {
        "relative_path": "code/daemon_repo.py",
        "location_name": "team",
        "env_vars": {
            "NOTES": str(notes),
            "SCHEDULE_STATUS": schedule_status,
            "ALERT_STATUS": alert_status,
        },
    }
    data: Dict[str, Any] = {"load_from": [{"python_file": entry}]}
    if daemon:
        data["daemon"] = daemon
    ws.workspace(data)


def read(ws: WorkspaceDir, what: Any) -> Any:
    path = Path(ws.env["WSM_STATE_DIR"]) / manager_key(ws) / "runs.db"
    if not path.exists():
        return None
    store = SqliteStorage(path, create=False)
    try:
        return what(store)
    finally:
        store.close()


def ticks(ws: WorkspaceDir, name: str, kind: str = "sensor") -> List[TickRecord]:
    return list(reversed(read(ws, lambda s: s.list_ticks("team", name, kind, 1000)) or []))


def runs(ws: WorkspaceDir) -> List[RunRecord]:
    return list(reversed(read(ws, lambda s: s.list_runs(limit=None)) or []))


def work_lines(ws: WorkspaceDir) -> List[str]:
    try:
        return (ws.root / "notes" / "work").read_text().split()
    except OSError:
        return []


def test_sensor_run_keys_dedupe_and_cursor_across_a_manager_restart(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        wait_for(lambda: len(ticks(ws, "files")) >= 3, 30, "three ticks of the sensor")
        wait_for(lambda: len(work_lines(ws)) == 2, 60, "the two runs to do their work")
        sensors = {d["name"]: d for d in control_call(ws, "instigators", {"kind": "sensor"})}
        assert sensors["files"]["status"] == "RUNNING"
        assert sensors["files"]["status_source"] == "code"
        assert sensors["stopped_by_default"]["status"] == "STOPPED"
        assert up.stop() == 0
    before = ticks(ws, "files")
    last_cursor = int(before[-1].cursor)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        n = len(before)
        wait_for(lambda: len(ticks(ws, "files")) >= n + 3, 30, "three more ticks")
        after = ticks(ws, "files")[n:]
        # the cursor goes on from where the first manager left it
        assert int(after[0].cursor) == last_cursor + 1
        assert all(t.run_ids == [] and t.run_keys_skipped == ["k1", "k2"] for t in after)
        # nothing launched: skipped, as Dagster records it, with the keys as the reason
        assert {(t.status, t.skip_reason) for t in after} == {
            ("skipped", "every run_key was used before (k1, k2)")
        }
        assert up.stop() == 0
    launched = runs(ws)
    assert sorted(r.run_key for r in launched) == ["k1", "k2"]
    assert all(r.status == "SUCCESS" and r.origin["kind"] == "sensor" for r in launched)
    assert sorted(work_lines(ws)) == sorted(r.run_id for r in launched)
    assert ticks(ws, "stopped_by_default") == []


def test_start_and_stop_are_kept_across_a_restart(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        answer = control_call(
            ws,
            "set_instigator_status",
            {"kind": "sensor", "name": "team:stopped_by_default", "status": "RUNNING"},
        )
        assert (answer["status"], answer["status_source"]) == ("RUNNING", "user")
        control_call(
            ws, "set_instigator_status", {"kind": "sensor", "name": "files", "status": "STOPPED"}
        )
        wait_for(lambda: ticks(ws, "stopped_by_default"), 30, "the started sensor to tick")
        with pytest.raises(RemoteError, match="no sensor named 'nope'"):
            control_call(
                ws, "set_instigator_status", {"kind": "sensor", "name": "nope", "status": "RUNNING"}
            )
        assert up.stop() == 0
    files_ticks = len(ticks(ws, "files"))
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        n = len(ticks(ws, "stopped_by_default"))
        wait_for(lambda: len(ticks(ws, "stopped_by_default")) >= n + 2, 30, "it ticks again")
        status = {d["name"]: d["status"] for d in control_call(ws, "instigators", {"kind": None})}
        assert status["files"] == "STOPPED" and status["stopped_by_default"] == "RUNNING"
        assert len(ticks(ws, "files")) == files_ticks
        assert up.stop() == 0


def test_the_workspace_default_status_is_for_code_that_sets_none(ws: WorkspaceDir) -> None:
    make(ws, daemon={"default_status": "running"})
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        wait_for(lambda: ticks(ws, "stopped_by_default"), 30, "the sensor to tick")
        found = {d["name"]: d for d in control_call(ws, "instigators", {"kind": None})}
        assert (
            found["stopped_by_default"]["status"],
            found["stopped_by_default"]["status_source"],
        ) == ("RUNNING", "workspace")
        # the code's own STOPPED wins over the workspace's default
        assert (found["every_minute"]["status"], found["every_minute"]["status_source"]) == (
            "STOPPED",
            "code",
        )
        assert up.stop() == 0


def test_a_run_failure_sensor_gets_each_failed_run_once_across_a_restart(
    ws: WorkspaceDir,
) -> None:
    make(ws, alert_status="RUNNING")
    control_stop = {"kind": "sensor", "name": "files", "status": "STOPPED"}

    def alerts() -> List[str]:
        try:
            return (ws.root / "notes" / "alerts").read_text().splitlines()
        except OSError:
            return []

    def alert_runs() -> List[RunRecord]:
        return [r for r in runs(ws) if r.origin.get("name") == "alert"]

    def failed_runs() -> List[RunRecord]:
        return [r for r in runs(ws) if r.job == "fails" and r.is_final]

    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        control_call(ws, "set_instigator_status", control_stop)
        wait_for(lambda: ticks(ws, "alert") == [], 5, "nothing delivered yet")
        first = control_call(ws, "launch_run", {"location": "team", "job": "fails"})["run_id"]
        wait_for(lambda: alerts(), 60, "the alert for the failed run")
        assert up.stop() == 0
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        second = control_call(ws, "launch_run", {"location": "team", "job": "fails"})["run_id"]
        wait_for(lambda: len(alerts()) == 2, 60, "the alert for the second failed run")
        wait_for(lambda: len(alert_runs()) == 2, 30, "the runs the alerts requested")
        assert up.stop() == 0
    assert [line.split(" ", 1)[0] for line in alerts()] == [first, second]
    assert "broken on purpose" in alerts()[0]
    assert sorted(r.run_key for r in alert_runs()) == sorted(
        f"alert-{run_id}" for run_id in (first, second)
    )
    assert len(failed_runs()) == 2


def test_no_daemon(ws: WorkspaceDir) -> None:
    make(ws)
    with WsmUp(ws, "--no-daemon") as up:
        up.wait_state("team", "ready")
        with pytest.raises(RemoteError, match="no daemon"):
            control_call(ws, "instigators", {})
        wait_for(lambda: read(ws, lambda s: True), 10, "the run database")
        assert up.stop() == 0
    assert ticks(ws, "files") == [] and runs(ws) == []


@pytest.mark.slow
def test_a_schedule_fires_on_a_real_minute_boundary(ws: WorkspaceDir) -> None:
    make(ws, schedule_status="RUNNING")
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        (schedule,) = control_call(ws, "instigators", {"kind": "schedule"})
        assert schedule["status"] == "RUNNING" and schedule["next_tick"] % 60 == 0
        wait_for(lambda: ticks(ws, "every_minute", "schedule"), 90, "a tick of the schedule")
        (tick,) = ticks(ws, "every_minute", "schedule")[:1]
        assert tick.tick_time == schedule["next_tick"] and tick.status == "success"
        (run_id,) = tick.run_ids

        def done() -> Any:
            record = read(ws, lambda s: s.get_run(run_id))
            return record if record.is_final else None

        record = wait_for(done, 60, "the scheduled run to end")
        assert record.status == "SUCCESS"
        assert record.origin["scheduled_time"] == tick.tick_time
        assert record.started_at is not None and record.started_at >= tick.tick_time
        assert up.stop() == 0


SLOW_REPO = """
import time
from workspace_manager import DefaultSensorStatus, SkipReason, job, repository, sensor

@job
def work():
    pass

@sensor(job=work, minimum_interval_seconds=1, default_status=DefaultSensorStatus.RUNNING)
def slow():
    time.sleep(20)
    return SkipReason("slept 20 s")

@sensor(job=work, minimum_interval_seconds=1, default_status=DefaultSensorStatus.RUNNING)
def quick():
    return SkipReason("nothing new")

@repository
def repo():
    return [work, slow, quick]
"""


@pytest.mark.slow
def test_a_sensor_sleeping_20_s_delays_no_other_sensor_nor_location_call(ws: WorkspaceDir) -> None:
    ws.file("code/daemon_repo.py", SLOW_REPO)
    ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "code/daemon_repo.py", "location_name": "team"}}
            ]
        }
    )
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        wait_for(lambda: ticks(ws, "quick"), 30, "the quick sensor's first tick")
        first = ticks(ws, "quick")[0].tick_time
        # while the slow sensor sleeps in its first evaluation: the quick one goes on every
        # second, and the location answers calls
        wait_for(lambda: len(ticks(ws, "quick")) >= 10, 30, "ten ticks of the quick sensor")
        answer = control_call(ws, "call", {"location": "team", "method": "ping", "params": {}})
        assert answer["pid"] > 0
        quick = ticks(ws, "quick")
        assert ticks(ws, "slow") == [] or ticks(ws, "slow")[0].ended_at > quick[9].ended_at
        assert quick[9].tick_time - first < 19  # ten ticks before the slow one could end
        wait_for(lambda: ticks(ws, "slow"), 40, "the slow sensor's tick")
        (slow,) = ticks(ws, "slow")[:1]
        assert slow.status == "skipped" and slow.skip_reason == "slept 20 s"
        assert up.stop() == 0

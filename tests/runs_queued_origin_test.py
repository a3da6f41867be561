"""A run's QUEUED event says who launched it, whoever did: a person, a retry, or the
schedule or sensor and the tick (its first line of `wsm run show`'s history)."""

from __future__ import annotations

import getpass
import json
import uuid
from pathlib import Path
from typing import Any

from e2e import WorkspaceDir, WsmUp, wait_for

from workspace_manager.storage.records import RunRecord, TickRecord, queued_message
from workspace_manager.storage.sqlite import SqliteStorage

REPO = """
from workspace_manager import DefaultSensorStatus, RunRequest, job, repository, sensor

@job
def hello(context):
    pass

@job
def other(context):
    pass

@sensor(jobs=[hello, other], minimum_interval_seconds=0.5,
        default_status=DefaultSensorStatus.RUNNING)
def watch(context):
    return RunRequest(run_key="k1", job_name="other")

@repository
def repo():
    return [hello, other, watch]
"""


def show(ws: WorkspaceDir, run_id: str) -> Any:
    done = ws.run("run", "show", run_id, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_sensors_run_and_a_persons_run_say_who_queued_them(ws: WorkspaceDir) -> None:
    ws.file("code/repo.py", REPO)
    ws.workspace({"load_from": [{"python_file": {"relative_path": "code/repo.py"}}]})
    with WsmUp(ws) as up:
        up.wait_state("repo", "ready")

        def sensor_run() -> Any:
            done = ws.run("run", "list", "--json")
            return [r for r in json.loads(done.stdout or "[]") if r["origin"]["kind"] == "sensor"]

        run = wait_for(sensor_run, 30, "the sensor's run")[0]
        launched = ws.run("job", "launch", "hello")
        assert launched.returncode == 0, launched.stderr
        manual = show(ws, launched.stdout.strip())
        text = ws.run("run", "show", run["run_id"])
        up.track()
    tick = run["origin"]["tick_id"]
    assert isinstance(tick, int) and tick > 0
    events = show(ws, run["run_id"])["events"]
    assert events[0]["status"] == "QUEUED"
    assert events[0]["message"] == f"queued (sensor watch, tick {tick}, run_key k1)"
    history = text.stdout.split("history\n", 1)[1].splitlines()
    assert history[0].endswith(f"QUEUED     queued (sensor watch, tick {tick}, run_key k1)")
    assert manual["events"][0]["message"] == f"queued (manual by {getpass.getuser()})"


def test_every_tick_run_names_its_schedule_or_sensor_and_tick(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "runs.db", create=True)
    try:
        for kind, key, words in [
            ("schedule", None, "schedule nightly, tick {}"),
            ("sensor", "k9", "sensor nightly, tick {}, run_key k9"),
        ]:
            run = RunRecord(uuid.uuid4().hex, "a", "j", run_key=key)
            tick, created = store.record_tick(
                TickRecord("a", "nightly", kind, 1.0, status="success"), [run]
            )
            (event,) = store.run_events(created[0].run_id)
            assert event.message == f"queued ({words.format(tick.tick_id)})"
        # a plain add_run keeps the message it is given
        plain = store.add_run(RunRecord(uuid.uuid4().hex, "a", "j"), "executed")
        assert store.run_events(plain.run_id)[0].message == "executed"
    finally:
        store.close()


def test_queued_message_of_each_origin() -> None:
    assert queued_message({"kind": "manual", "user": "al", "via": "cli"}) == "queued (manual by al)"
    assert (
        queued_message({"kind": "manual", "via": "api", "peer": "10.0.0.7"})
        == "queued (manual via api from 10.0.0.7)"
    )
    assert queued_message({}) == "queued (manual)"
    assert (
        queued_message({"kind": "schedule", "name": "n", "tick_id": 3, "scheduled_time": 1.0})
        == "queued (schedule n, tick 3)"
    )
    assert queued_message({"kind": "sensor", "name": "s"}) == "queued (sensor s)"
    assert (
        queued_message({"kind": "retry", "attempt": 2, "parent_run_id": "ab12"})
        == "queued (retry 2 of ab12)"
    )

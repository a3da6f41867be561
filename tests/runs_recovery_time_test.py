"""After `kill -9` of the manager, the next `wsm up` ends the runs it left in progress at the
last moment the records show them alive (their last event or log line, or a tick the
manager recorded after), never at the restart: the downtime is not part of their duration."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest
from e2e import WorkspaceDir, WsmUp, manager_key, wait_for

from workspace_manager.storage.records import (
    FAILURE,
    STARTED,
    LogLine,
    RunRecord,
    TickRecord,
)
from workspace_manager.storage.sqlite import SqliteStorage

REPO = """
import time
from workspace_manager import DefaultSensorStatus, SkipReason, job, repository, sensor

@job
def talker(context):
    context.log.info("working on it")
    time.sleep(600)

@job
def quiet(context):
    time.sleep(600)

@sensor(job=quiet, minimum_interval_seconds=0.5, default_status=DefaultSensorStatus.RUNNING)
def idle(context):
    return SkipReason("nothing to do")

@repository
def repo():
    return [talker, quiet, idle]
"""

DOWNTIME = 3.0  # seconds between the kill and the next `wsm up`


def make(ws: WorkspaceDir) -> Path:
    ws.file("code/repo.py", REPO)
    entry = {"relative_path": "code/repo.py", "location_name": "team"}
    return ws.workspace({"load_from": [{"python_file": entry}]})


def storage(ws: WorkspaceDir) -> SqliteStorage:
    return SqliteStorage(Path(ws.env["WSM_STATE_DIR"]) / manager_key(ws) / "runs.db", create=False)


def read(ws: WorkspaceDir, what: Any) -> Any:
    store = storage(ws)
    try:
        return what(store)
    finally:
        store.close()


def launch(ws: WorkspaceDir, job: str) -> str:
    done = ws.run("job", "launch", job)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def final(ws: WorkspaceDir, run_id: str) -> RunRecord:
    def check() -> Any:
        record = read(ws, lambda s: s.get_run(run_id))
        return record if record.is_final else None

    return wait_for(check, 60, f"run {run_id} to end")


def kill_and_restart(ws: WorkspaceDir, up: WsmUp, run_id: str, *args: str) -> RunRecord:
    """kill -9 the manager (its runs die with it), wait DOWNTIME, start it again; the run
    as the new manager's recovery left it. Returns with every process gone."""
    up.track()
    up.stop(signal.SIGKILL)
    up.assert_no_leftovers()
    time.sleep(DOWNTIME)
    with WsmUp(ws, *args) as again:
        record = final(ws, run_id)
        again.track()
    return record


@pytest.mark.slow
def test_a_killed_run_ends_at_its_last_log_line_not_at_the_restart(ws: WorkspaceDir) -> None:
    make(ws)
    up = WsmUp(ws, "--no-daemon")  # no ticks: the run's own records are all there is
    try:
        up.wait_state("team", "ready")
        run_id = launch(ws, "talker")
        lines: List[LogLine] = wait_for(
            lambda: [ln for ln in read(ws, lambda s: s.read_logs(run_id)) if "working" in ln.text],
            30,
            "the run's log line",
        )
        time.sleep(1.0)  # alive, silent
        killed_at = time.time()
        record = kill_and_restart(ws, up, run_id, "--no-daemon")
    finally:
        if up.proc.poll() is None:
            up.stop(signal.SIGKILL)
    assert record.status == FAILURE
    assert record.error == "the manager was killed while the run was in progress"
    assert record.ended_at is not None and record.started_at is not None
    # its last sign of life: the log line (or a later event), before the kill
    assert lines[-1].time <= record.ended_at <= killed_at
    assert record.ended_at - record.started_at < killed_at - record.started_at + 0.5
    shown = ws.run("run", "show", run_id)
    assert shown.returncode == 0, shown.stderr


@pytest.mark.slow
def test_a_quiet_killed_run_ends_at_the_managers_last_tick(ws: WorkspaceDir) -> None:
    make(ws)
    up = WsmUp(ws)
    try:
        up.wait_state("team", "ready")
        run_id = launch(ws, "quiet")
        started = wait_for(
            lambda: read(ws, lambda s: s.get_run(run_id)).started_at, 30, "the run to start"
        )

        def tick_after_start() -> Any:
            ticks = read(ws, lambda s: s.list_ticks("team", "idle", "sensor", 1))
            return ticks and ticks[0].tick_time > started + 1.0

        wait_for(tick_after_start, 30, "a tick of the sensor a second after the run started")
        killed_at = time.time()
        record = kill_and_restart(ws, up, run_id)
    finally:
        if up.proc.poll() is None:
            up.stop(signal.SIGKILL)
    assert record.status == FAILURE and record.ended_at is not None
    # the run logged nothing, but the manager ticked while it ran: it was alive then
    assert started + 1.0 < record.ended_at <= killed_at


# -- the storage reads recovery uses ------------------------------------------------------


def test_last_seen_and_last_tick_time_read_the_latest_records(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "runs.db", create=True)
    try:
        t0 = time.time() - 100
        run = store.add_run(RunRecord(uuid.uuid4().hex, "a", "j", created_at=t0))
        store.update_run(run.run_id, status=STARTED, started_at=t0 + 1)
        events_end = max(e.time for e in store.run_events(run.run_id))
        assert store.last_seen(run.run_id) == events_end
        future = time.time() + 50  # a line stamped later than any event
        store.append_logs([LogLine(run.run_id, t0 + 2, "stdout", f"line {i}") for i in range(3)])
        store.append_logs([LogLine(run.run_id, future, "stdout", "last")])
        assert store.last_seen(run.run_id) == future
        assert store.last_seen("f" * 32) is None
        assert store.last_tick_time() is None
        ticks: Dict[str, float] = {"a": t0 + 5, "b": t0 + 9}
        for name, at in ticks.items():
            store.record_tick(
                TickRecord("a", name, "sensor", at, status="skipped", started_at=at, ended_at=at)
            )
        assert store.last_tick_time() == t0 + 9
    finally:
        store.close()

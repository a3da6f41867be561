"""`daemon: {retention: ...}` of workspace.yaml is what a running `wsm up` prunes by: at
start and then hourly (storage/retention.py, supervisor/workload.py). The storage's own
rules (what goes, what stays) are tested in tests/storage_sqlite_test.py."""

from __future__ import annotations

import time
from pathlib import Path

from e2e import WorkspaceDir, WsmUp, wait_for

from workspace_manager.storage.records import FAILURE, SUCCESS, LogLine, RunRecord
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.supervisor import runtime

REPO = """
from workspace_manager import job, repository

@job
def hello():
    return 1

@repository
def repo():
    return [hello]
"""

DAY = 86400.0


def _db(ws: WorkspaceDir) -> Path:
    key = runtime.manager_key(f"workspace:{ws.root / 'workspace.yaml'}")
    return Path(ws.env["WSM_STATE_DIR"]) / key / "runs.db"


def _old_run(store: SqliteStorage, run_id: str, age_days: float, status: str) -> None:
    then = time.time() - age_days * DAY
    store.add_run(RunRecord(run_id=run_id, location="team", job="hello", created_at=then))
    store.append_logs([LogLine(run_id=run_id, time=then, stream="stdout", text="hi")])
    store.update_run(run_id, status=status, ended_at=then)


def test_a_running_manager_prunes_by_the_workspace_retention(ws: WorkspaceDir) -> None:
    ws.file("repo.py", REPO)
    ws.workspace(
        {
            "load_from": [{"python_file": {"relative_path": "repo.py", "location_name": "team"}}],
            "daemon": {"retention": {"runs_days": 10, "logs_days": 2}},
        }
    )
    db = _db(ws)
    db.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    store = SqliteStorage(db)
    try:
        _old_run(store, "a" * 32, 30, FAILURE)  # past runs_days: goes whole
        _old_run(store, "b" * 32, 5, SUCCESS)  # kept, but its logs are past logs_days
        _old_run(store, "c" * 32, 1, SUCCESS)  # kept with its logs
    finally:
        store.close()
    with WsmUp(ws) as up:
        up.wait_state("team", "ready")
        reader = SqliteStorage(db, create=False)
        try:
            wait_for(
                lambda: [r.run_id[0] for r in reader.list_runs()] == ["c", "b"],
                20,
                "the 30-day-old run pruned",
            )
            wait_for(lambda: reader.read_logs("b" * 32) == [], 20, "5-day-old logs pruned")
            assert [line.text for line in reader.read_logs("c" * 32)] == ["hi"]
        finally:
            reader.close()
        assert "retention: deleted" in up.output()
        assert up.stop() == 0

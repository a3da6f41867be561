"""The run database's versioned schema: upgrades in one transaction, a newer one refused."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import List

import pytest
import sqlalchemy as sa

from workspace_manager.storage import schema
from workspace_manager.storage.base import SchemaTooNew, StorageError
from workspace_manager.storage.paths import open_storage
from workspace_manager.storage.records import RunRecord
from workspace_manager.storage.sqlite import SqliteStorage


def versions(path: Path) -> List[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def tables(path: Path) -> List[str]:
    with sqlite3.connect(path) as conn:
        return sorted(
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        )


def test_empty_file_is_version_0_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.touch()
    store = SqliteStorage(path)
    store.add_run(RunRecord("r1", "loc", "job"))
    store.close()
    assert versions(path) == [schema.CURRENT_VERSION] == [1]
    assert {"runs", "run_events", "run_logs", "run_keys", "instigators", "ticks"} <= set(
        tables(path)
    )


def test_version_table_without_rows_is_version_0(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    SqliteStorage(path).close()
    assert versions(path) == [1]


def test_reopening_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SqliteStorage(path).close()
    store = SqliteStorage(path)
    with store._write() as conn:
        assert schema.migrate(conn, "x") == (1, 1)
    store.close()
    assert versions(path) == [1]


def test_a_newer_schema_is_refused_with_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WSM_STATE_DIR", str(tmp_path))
    store = open_storage("key")
    store.add_run(RunRecord("r1", "loc", "job"))
    store.close()
    path = tmp_path / "key" / "runs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (7, 0)")
    with pytest.raises(SchemaTooNew) as caught:
        open_storage("key", create=False)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and "version 7" in message and "this wsm's 1" in message
    # Refused, not touched: the newer wsm's data is all there.
    assert versions(path) == [1, 7]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT run_id FROM runs").fetchall() == [("r1",)]


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    with pytest.raises(StorageError, match="not a wsm run database"):
        SqliteStorage(path)
    assert tables(path) == ["notes"]


def test_missing_steps_apply_in_order_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"
    SqliteStorage(path).close()
    applied: List[int] = []

    def step(version: int, fail: bool = False):
        def run(conn: sa.Connection) -> None:
            applied.append(version)
            conn.exec_driver_sql(f"CREATE TABLE extra_v{version} (x INTEGER)")
            if fail:
                raise RuntimeError("step failed")

        return run

    base = list(schema.MIGRATIONS)
    monkeypatch.setattr(schema, "MIGRATIONS", base + [(2, step(2)), (3, step(3, fail=True))])
    monkeypatch.setattr(schema, "CURRENT_VERSION", 3)
    with pytest.raises(RuntimeError, match="step failed"):
        SqliteStorage(path)
    assert applied == [2, 3]
    # Neither step 2 nor step 3 was kept: the database is still a whole version 1.
    assert versions(path) == [1]
    assert "extra_v2" not in tables(path)

    monkeypatch.setattr(schema, "MIGRATIONS", base + [(2, step(2)), (3, step(3))])
    applied.clear()
    SqliteStorage(path).close()
    assert applied == [2, 3] and versions(path) == [1, 2, 3]
    assert {"extra_v2", "extra_v3"} <= set(tables(path))


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "runs.db"
    errors: List[BaseException] = []

    def open_it(i: int) -> None:
        try:
            store = SqliteStorage(path)
            store.add_run(RunRecord(f"r{i}", "loc", "job"))
            store.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=open_it, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert versions(path) == [1]
    store = SqliteStorage(path)
    assert len(store.list_runs()) == 6
    store.close()


KILLED_MID_MIGRATION = """
import os, signal, sys
from workspace_manager.storage import schema
from workspace_manager.storage.sqlite import SqliteStorage

def dying(conn):
    schema._v1(conn)  # every table made, the version row not yet: then kill -9
    os.kill(os.getpid(), signal.SIGKILL)

schema.MIGRATIONS[0] = (1, dying)
SqliteStorage(sys.argv[1])
"""


def test_kill_9_in_the_middle_of_a_migration_keeps_the_old_version(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    path = tmp_path / "runs.db"
    child = subprocess.run(
        [sys.executable, "-c", KILLED_MID_MIGRATION, str(path)], timeout=120, check=False
    )
    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert tables(path) == []  # none of the half-done migration was kept
    store = SqliteStorage(path)
    store.add_run(RunRecord("r1", "loc", "job"))
    store.close()
    assert versions(path) == [1]

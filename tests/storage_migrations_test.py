"""The run database's versioned schema: upgrades in one transaction, a newer one refused."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import List

import pytest

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
        def run(conn: sqlite3.Connection) -> None:
            applied.append(version)
            conn.execute(f"CREATE TABLE extra_v{version} (x INTEGER)")
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


#: The schema as the first wsm that kept runs created it (read back from sqlite_master of a
#: database it made; whitespace collapsed): a version 1 database in the field.
FIRST_SCHEMA = (
    (
        "CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at DOUBLE NOT NULL, "
        "PRIMARY KEY (version))"
    ),
    (
        "CREATE TABLE runs (run_id VARCHAR NOT NULL, location VARCHAR NOT NULL, repository "
        "VARCHAR, job VARCHAR NOT NULL, status VARCHAR NOT NULL, run_config JSON NOT NULL, tags"
        " JSON NOT NULL, origin JSON NOT NULL, run_key VARCHAR, parent_run_id VARCHAR, attempt "
        "INTEGER NOT NULL, priority INTEGER NOT NULL, created_at DOUBLE NOT NULL, start_time "
        "DOUBLE, started_at DOUBLE, ended_at DOUBLE, pid INTEGER, exit_code INTEGER, signal "
        "INTEGER, error TEXT, traceback TEXT, end_seq INTEGER, updated_at DOUBLE NOT NULL, "
        "PRIMARY KEY (run_id), UNIQUE (end_seq))"
    ),
    "CREATE INDEX ix_runs_location_job ON runs (location, job, created_at, run_id)",
    "CREATE INDEX ix_runs_created ON runs (created_at, run_id)",
    "CREATE INDEX ix_runs_status_ended ON runs (status, ended_at)",
    "CREATE INDEX ix_runs_status ON runs (status, created_at, run_id)",
    (
        "CREATE TABLE run_keys (location VARCHAR NOT NULL, name VARCHAR NOT NULL, kind VARCHAR "
        "NOT NULL, run_key VARCHAR NOT NULL, run_id VARCHAR NOT NULL, created_at DOUBLE NOT "
        "NULL, CONSTRAINT uq_run_keys PRIMARY KEY (location, name, kind, run_key)) WITHOUT "
        "ROWID"
    ),
    (
        "CREATE TABLE instigators (location VARCHAR NOT NULL, name VARCHAR NOT NULL, kind "
        "VARCHAR NOT NULL, status VARCHAR, cursor TEXT, last_run_key VARCHAR, last_tick_time "
        "DOUBLE, updated_at DOUBLE NOT NULL, CONSTRAINT pk_instigators PRIMARY KEY (location, "
        "name, kind))"
    ),
    (
        "CREATE TABLE ticks (tick_id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, location "
        "VARCHAR NOT NULL, name VARCHAR NOT NULL, kind VARCHAR NOT NULL, tick_time DOUBLE NOT "
        "NULL, status VARCHAR NOT NULL, started_at DOUBLE NOT NULL, ended_at DOUBLE, "
        "skip_reason TEXT, error TEXT, cursor TEXT, run_ids JSON NOT NULL, run_keys JSON NOT "
        "NULL, run_keys_skipped JSON NOT NULL)"
    ),
    "CREATE INDEX ix_ticks_instigator ON ticks (name, kind, location, tick_id)",
    "CREATE INDEX ix_ticks_time ON ticks (tick_time)",
    ("CREATE TABLE counters (name VARCHAR NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (name))"),
    (
        "CREATE TABLE run_events (event_id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, run_id "
        "VARCHAR NOT NULL, time DOUBLE NOT NULL, status VARCHAR NOT NULL, message TEXT NOT "
        "NULL, FOREIGN KEY(run_id) REFERENCES runs (run_id) ON DELETE CASCADE)"
    ),
    "CREATE INDEX ix_run_events_run ON run_events (run_id, event_id)",
    (
        "CREATE TABLE run_logs (run_id VARCHAR NOT NULL, seq INTEGER NOT NULL, time DOUBLE NOT "
        "NULL, stream VARCHAR NOT NULL, text TEXT NOT NULL, level VARCHAR, CONSTRAINT "
        "pk_run_logs PRIMARY KEY (run_id, seq), FOREIGN KEY(run_id) REFERENCES runs (run_id) ON"
        " DELETE CASCADE) WITHOUT ROWID"
    ),
)


def _normalized(sql: str) -> str:
    sql = re.sub(r"\s+", " ", sql).strip()
    return re.sub(r" ,", ",", re.sub(r" \)", ")", re.sub(r"\( ", "(", sql)))


def schema_of(path: Path) -> List[str]:
    with sqlite3.connect(path) as conn:
        return sorted(
            _normalized(r[0])
            for r in conn.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            )
        )


def test_a_fresh_database_has_the_first_schema(tmp_path: Path) -> None:
    """Version 1 is frozen: a new database is, statement for statement, the one the first
    wsm that kept runs made (only `IF NOT EXISTS` on schema_version differs)."""
    SqliteStorage(tmp_path / "runs.db").close()
    fresh = [
        s.replace("CREATE TABLE IF NOT EXISTS", "CREATE TABLE")
        for s in schema_of(tmp_path / "runs.db")
    ]
    assert fresh == sorted(FIRST_SCHEMA)


def test_a_database_of_the_first_schema_is_used_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        for statement in FIRST_SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1, 0)")
        conn.execute("INSERT INTO counters VALUES ('end_seq', 3)")
        # A run as the first wsm wrote it: JSON columns as compact JSON text.
        conn.execute(
            "INSERT INTO runs (run_id, location, job, status, run_config, tags, origin, attempt,"
            " priority, created_at, updated_at, end_seq, ended_at)"
            """ VALUES ('old1', 'loc', 'job', 'SUCCESS', '{"a":[1,2.5,null,"é"]}', '{}',"""
            """ '{"kind":"manual"}', 0, 0, 5.0, 6.0, 3, 6.0)"""
        )
    before = schema_of(path)
    store = SqliteStorage(path)
    old = store.get_run("old1")
    assert old.run_config == {"a": [1, 2.5, None, "é"]} and old.origin == {"kind": "manual"}
    store.add_run(RunRecord("new1", "loc", "job"))
    assert store.update_run("new1", status="FAILURE").end_seq == 4
    assert [r.run_id for r in store.list_runs()][-1] == "old1"
    store.close()
    assert versions(path) == [1] and schema_of(path) == before

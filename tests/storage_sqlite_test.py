"""SqliteStorage against the `Storage` contract (storage/base.py docstrings), on real files."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from workspace_manager.storage.base import RunKeyUsed, RunNotFound, StorageError
from workspace_manager.storage.paths import database_path, open_storage
from workspace_manager.storage.records import (
    CANCELED,
    FAILURE,
    QUEUED,
    RUN_STATUSES,
    STARTED,
    STARTING,
    SUCCESS,
    TICK_FAILURE,
    TICK_SKIPPED,
    TICK_SUCCESS,
    InstigatorState,
    LogLine,
    Retention,
    RunRecord,
    TickRecord,
)
from workspace_manager.storage.sqlite import SqliteStorage

DAY = 86400.0


@pytest.fixture
def db(tmp_path: Path):
    store = SqliteStorage(tmp_path / "state" / "k" / "runs.db")
    yield store
    store.close()


def run(run_id: str, **kw) -> RunRecord:
    kw.setdefault("location", "loc")
    kw.setdefault("job", "job")
    return RunRecord(run_id=run_id, **kw)


def test_file_and_folder_are_private_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "state" / "k" / "runs.db"
    store = SqliteStorage(path)
    store.add_run(run("r1"))
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    for name in ("runs.db", "runs.db-wal", "runs.db-shm"):
        assert stat.S_IMODE(os.stat(path.parent / name).st_mode) == 0o600, name
    with store._read() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    store.close()


def test_run_round_trip_and_events(db: SqliteStorage) -> None:
    before = time.time()
    stored = db.add_run(
        run(
            "0f3c0000aaaa",
            repository="repo",
            run_config={"ops": {"a": {"config": {"n": [1, 2.5, None, "é"]}}}},
            tags={"wsm/priority": "3", "team": "x"},
            origin={"kind": "manual", "user": "alice", "host": "box", "via": "cli"},
            parent_run_id="p",
            attempt=1,
            priority=3,
        ),
        "queued by alice",
    )
    assert stored.created_at >= before and stored.updated_at >= stored.created_at
    got = db.get_run("0f3c0000aaaa")
    assert got == stored
    assert got.run_config == {"ops": {"a": {"config": {"n": [1, 2.5, None, "é"]}}}}

    db.update_run("0f3c0000aaaa", status=STARTING, start_time=1.5, pid=4242)
    db.update_run("0f3c0000aaaa", status=STARTED, started_at=2.5)
    db.update_run("0f3c0000aaaa", error=None, traceback="tb")  # fields only: no event
    final = db.update_run(
        "0f3c0000aaaa", status=FAILURE, message="boom", exit_code=1, error="ValueError: x"
    )
    assert (final.pid, final.start_time, final.started_at, final.exit_code) == (4242, 1.5, 2.5, 1)
    assert final.ended_at is not None and final.end_seq == 1 and final.traceback == "tb"
    assert db.get_run("0f3c0000aaaa") == final
    events = db.run_events("0f3c0000aaaa")
    assert [(e.status, e.message) for e in events] == [
        (QUEUED, "queued by alice"),
        (STARTING, ""),
        (STARTED, ""),
        (FAILURE, "boom"),
    ]
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert db.run_events("nope") == []

    with pytest.raises(RunNotFound):
        db.update_run("nope", status=STARTED)
    with pytest.raises(TypeError):
        db.update_run("0f3c0000aaaa", end_seq=9)
    with pytest.raises(ValueError):
        db.update_run("0f3c0000aaaa", status="RUNNING")
    with pytest.raises(StorageError, match="already stored"):
        db.add_run(run("0f3c0000aaaa"))


def test_final_runs_never_change(db: SqliteStorage) -> None:
    db.add_run(run("r1"))
    canceled = db.update_run("r1", status=CANCELED, message="canceled by user")
    late = db.update_run("r1", status=FAILURE, message="exit 143", exit_code=143)
    assert late == canceled and db.get_run("r1") == canceled
    assert db.update_run("r1", pid=1) == canceled
    assert [e.status for e in db.run_events("r1")] == [QUEUED, CANCELED]


def test_end_seq_one_counter_in_finishing_order(db: SqliteStorage) -> None:
    for i in range(5):
        db.add_run(run(f"r{i}"))
    assert db.max_end_seq() == 0
    for i in (3, 0, 4):
        db.update_run(f"r{i}", status=SUCCESS)
    done = db.finished_runs_after(0)
    assert [(r.run_id, r.end_seq) for r in done] == [("r3", 1), ("r0", 2), ("r4", 3)]
    assert [r.run_id for r in db.finished_runs_after(1, limit=1)] == ["r0"]
    assert db.max_end_seq() == 3
    # A run stored already final (a `wsm job execute` record written at the end) counts too.
    db.add_run(run("x", status=FAILURE))
    assert db.get_run("x").end_seq == 4 and db.get_run("x").ended_at is not None
    # Numbers are never reused, even when the runs that had them are pruned.
    db.prune(time.time() + 1000 * DAY, Retention(runs_days=1))
    assert db.max_end_seq() == 4
    db.update_run("r1", status=SUCCESS)
    assert db.get_run("r1").end_seq == 5


def test_prefix_lookup(db: SqliteStorage) -> None:
    db.add_run(run("abcd1111"))
    db.add_run(run("abcd2222"))
    db.add_run(run("abce0000"))
    assert db.get_run("abcd1").run_id == "abcd1111"
    assert db.get_run("abce").run_id == "abce0000"
    assert db.get_run("abcd2222").run_id == "abcd2222"
    with pytest.raises(RunNotFound, match="several runs"):
        db.get_run("abcd")
    with pytest.raises(RunNotFound, match="no run"):
        db.get_run("ffff")
    with pytest.raises(RunNotFound, match="at least 4"):
        db.get_run("abc")
    # A prefix is a prefix, not a pattern.
    with pytest.raises(RunNotFound):
        db.get_run("ab_d")
    with pytest.raises(RunNotFound):
        db.get_run("abc%")


def test_list_runs_newest_first_with_keyset_paging(db: SqliteStorage) -> None:
    # Three runs share one created_at: the run_id breaks the tie, and paging loses none.
    times = [10.0, 11.0, 12.0, 12.0, 12.0, 13.0, 14.0]
    for i, created in enumerate(times):
        db.add_run(
            run(f"r{i}", created_at=created, location="a" if i % 2 else "b", job=f"j{i % 3}")
        )
    everything = db.list_runs(limit=None)
    assert [r.run_id for r in everything] == ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]
    pages, before = [], None
    while True:
        page = db.list_runs(limit=2, before=before)
        if not page:
            break
        pages.append([r.run_id for r in page])
        before = (page[-1].created_at, page[-1].run_id)
    assert pages == [["r6", "r5"], ["r4", "r3"], ["r2", "r1"], ["r0"]]
    assert [r.run_id for r in db.list_runs(location="a")] == ["r5", "r3", "r1"]
    assert [r.run_id for r in db.list_runs(job="j0")] == ["r6", "r3", "r0"]
    db.update_run("r3", status=STARTED)
    db.update_run("r5", status=SUCCESS)
    assert [r.run_id for r in db.list_runs(statuses=[STARTED, SUCCESS])] == ["r5", "r3"]
    assert [r.run_id for r in db.list_runs(statuses=[QUEUED], location="b", limit=2)] == [
        "r6",
        "r4",
    ]


def test_run_counts_name_every_status(db: SqliteStorage) -> None:
    assert db.run_counts() == dict.fromkeys(RUN_STATUSES, 0)
    for i in range(4):
        db.add_run(run(f"r{i}"))
    db.update_run("r0", status=STARTED)
    db.update_run("r1", status=FAILURE)
    counts = db.run_counts()
    assert set(counts) == set(RUN_STATUSES)
    assert (counts[QUEUED], counts[STARTED], counts[FAILURE], counts[SUCCESS]) == (2, 1, 1, 0)


def test_logs_seq_per_run_and_paging(db: SqliteStorage) -> None:
    db.add_run(run("a"))
    db.add_run(run("b"))
    lines = [LogLine("a" if i % 3 else "b", float(i), "stdout", f"line {i}") for i in range(10)]
    lines.append(LogLine("a", 10.0, "log", "hello", level="INFO"))
    db.append_logs(lines)
    a = db.read_logs("a")
    assert [line.seq for line in a] == list(range(1, 8))
    assert a[-1].text == "hello" and a[-1].level == "INFO" and a[-1].stream == "log"
    assert [line.seq for line in db.read_logs("b")] == [1, 2, 3, 4]
    db.append_logs([LogLine("b", 11.0, "stderr", "more")])
    assert [(x.seq, x.text) for x in db.read_logs("b", after_seq=3)] == [(4, "line 9"), (5, "more")]
    assert [x.seq for x in db.read_logs("a", after_seq=2, limit=3)] == [3, 4, 5]
    # Lines of a run that is not stored are dropped; the others are kept.
    with pytest.raises(RunNotFound, match="ghost"):
        db.append_logs([LogLine("ghost", 1.0, "stdout", "x"), LogLine("a", 12.0, "stdout", "y")])
    assert db.read_logs("a")[-1].text == "y"
    db.append_logs([])


def test_instigator_state(db: SqliteStorage) -> None:
    fresh = db.get_instigator("loc", "s", "sensor")
    assert (fresh.status, fresh.cursor, fresh.last_run_key) == (None, None, None)
    db.set_instigator(InstigatorState("loc", "s", "sensor", status="RUNNING", cursor="c1"))
    db.set_instigator(InstigatorState("loc", "d", "schedule", last_tick_time=5.0))
    db.set_instigator(InstigatorState("loc", "s", "sensor", status="STOPPED", cursor="c2"))
    got = db.get_instigator("loc", "s", "sensor")
    assert (got.status, got.cursor, got.updated_at > 0) == ("STOPPED", "c2", True)
    assert [(s.name, s.kind) for s in db.list_instigators()] == [
        ("d", "schedule"),
        ("s", "sensor"),
    ]
    assert [s.name for s in db.list_instigators("schedule")] == ["d"]


def test_record_tick_one_transaction_with_run_key_dedupe(db: SqliteStorage) -> None:
    tick = TickRecord("loc", "sen", "sensor", tick_time=100.0, status=TICK_SUCCESS, cursor="7")
    state = InstigatorState("loc", "sen", "sensor", cursor="7", last_run_key="k2")
    stored, created = db.record_tick(
        tick,
        [run("r1", run_key="k1"), run("r2", run_key="k2"), run("r3", run_key="k1"), run("r4")],
        state,
    )
    assert stored.tick_id > 0
    assert [r.run_id for r in created] == ["r1", "r2", "r4"]
    assert stored.run_ids == ["r1", "r2", "r4"]
    assert stored.run_keys == ["k1", "k2"] and stored.run_keys_skipped == ["k1"]
    assert created[0].origin == {
        "kind": "sensor",
        "name": "sen",
        "run_key": "k1",
        "tick_id": stored.tick_id,
    }
    assert db.get_instigator("loc", "sen", "sensor").cursor == "7"
    assert db.list_ticks("loc", "sen", "sensor") == [stored]

    # Again: the used keys are skipped; the same key in another sensor (or location) is not.
    again, created = db.record_tick(
        TickRecord("loc", "sen", "sensor", tick_time=130.0),
        [run("r5", run_key="k1"), run("r6", run_key="k3")],
    )
    assert [r.run_id for r in created] == ["r6"] and again.run_keys_skipped == ["k1"]
    _, other = db.record_tick(
        TickRecord("loc", "other", "sensor", tick_time=130.0), [run("r7", run_key="k1")]
    )
    _, elsewhere = db.record_tick(
        TickRecord("loc2", "sen", "sensor", tick_time=130.0),
        [run("r8", location="loc2", run_key="k1")],
    )
    assert [r.run_id for r in other + elsewhere] == ["r7", "r8"]

    # add_run applies the same rule to a run whose origin names the sensor.
    with pytest.raises(RunKeyUsed) as caught:
        db.add_run(run("r9", run_key="k3", origin={"kind": "sensor", "name": "sen"}))
    assert caught.value.run_id == "r6"
    db.add_run(run("r10", run_key="k3", origin={"kind": "manual"}))  # not an instigator's

    # A tick's row is updated when tick_id is given (started -> success).
    started, _ = db.record_tick(TickRecord("loc", "sch", "schedule", tick_time=60.0))
    assert started.status == "started"
    done, runs = db.record_tick(
        TickRecord(
            "loc", "sch", "schedule", tick_time=60.0, tick_id=started.tick_id, status=TICK_SUCCESS
        ),
        [run("r11", origin={"kind": "schedule", "name": "sch", "scheduled_time": 60.0})],
    )
    assert done.tick_id == started.tick_id and runs[0].origin["tick_id"] == started.tick_id
    assert db.list_ticks("loc", "sch", "schedule") == [done]


def test_record_tick_is_all_or_nothing(db: SqliteStorage) -> None:
    db.add_run(run("dup"))
    with pytest.raises(StorageError):
        db.record_tick(
            TickRecord("loc", "sen", "sensor", tick_time=1.0),
            [run("fresh", run_key="k1"), run("dup", run_key="k2")],
            InstigatorState("loc", "sen", "sensor", cursor="moved"),
        )
    assert db.list_ticks(None, "sen", "sensor") == []
    assert db.get_instigator("loc", "sen", "sensor").cursor is None
    with pytest.raises(RunNotFound):
        db.get_run("fresh")
    # k1 was not used: the failed tick's key is free.
    _, created = db.record_tick(
        TickRecord("loc", "sen", "sensor", tick_time=2.0), [run("fresh", run_key="k1")]
    )
    assert [r.run_id for r in created] == ["fresh"]


def test_run_key_dedupe_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    first = SqliteStorage(path)
    first.record_tick(TickRecord("loc", "sen", "sensor", tick_time=1.0), [run("r1", run_key="k")])
    first.close()
    second = SqliteStorage(path)
    tick, created = second.record_tick(
        TickRecord("loc", "sen", "sensor", tick_time=2.0), [run("r2", run_key="k")]
    )
    assert created == [] and tick.run_keys_skipped == ["k"]
    # And after the run that used it was pruned: keys are never deleted.
    second.update_run("r1", status=SUCCESS, ended_at=5.0)
    assert second.prune(1000 * DAY, Retention(runs_days=1))["runs"] == 1
    second.close()
    third = SqliteStorage(path)
    _, created = third.record_tick(
        TickRecord("loc", "sen", "sensor", tick_time=3.0), [run("r3", run_key="k")]
    )
    assert created == []
    third.close()


def test_list_ticks_and_counts(db: SqliteStorage) -> None:
    for i, status in enumerate([TICK_SUCCESS, TICK_SKIPPED, TICK_FAILURE, TICK_SKIPPED]):
        db.record_tick(TickRecord("a", "s", "sensor", tick_time=float(i), status=status))
    db.record_tick(TickRecord("b", "s", "sensor", tick_time=9.0, status=TICK_SUCCESS))
    db.record_tick(TickRecord("a", "s", "schedule", tick_time=9.0, status=TICK_SUCCESS))
    assert [t.tick_time for t in db.list_ticks("a", "s", "sensor")] == [3.0, 2.0, 1.0, 0.0]
    assert [t.tick_time for t in db.list_ticks(None, "s", "sensor", limit=2)] == [9.0, 3.0]
    assert [t.tick_time for t in db.list_ticks("a", "s", "sensor", statuses=[TICK_SKIPPED])] == [
        3.0,
        1.0,
    ]
    assert db.tick_counts() == {
        ("sensor", TICK_SUCCESS): 2,
        ("sensor", TICK_SKIPPED): 2,
        ("sensor", TICK_FAILURE): 1,
        ("schedule", TICK_SUCCESS): 1,
    }


def test_retention(db: SqliteStorage) -> None:
    now = 1000 * DAY
    # old final, old but still running, recent final, old final with logs only past logs_days
    db.add_run(run("old", created_at=now - 100 * DAY))
    db.update_run("old", status=SUCCESS, ended_at=now - 95 * DAY)
    db.add_run(run("stuck", created_at=now - 200 * DAY))
    db.update_run("stuck", status=STARTED)
    db.add_run(run("mid", created_at=now - 40 * DAY))
    db.update_run("mid", status=FAILURE, ended_at=now - 40 * DAY)
    db.add_run(run("new", created_at=now - DAY))
    db.update_run("new", status=SUCCESS, ended_at=now - DAY)
    for rid in ("old", "stuck", "mid", "new"):
        db.append_logs([LogLine(rid, now - 200 * DAY, "stdout", f"{rid} {i}") for i in range(3)])
    db.record_tick(TickRecord("l", "s", "sensor", tick_time=now - 10 * DAY, status=TICK_SUCCESS))
    db.record_tick(TickRecord("l", "s", "sensor", tick_time=now - 2 * DAY, status=TICK_SKIPPED))
    db.record_tick(TickRecord("l", "s", "sensor", tick_time=now - 2 * DAY, status=TICK_SUCCESS))
    db.record_tick(TickRecord("l", "s", "sensor", tick_time=now - 0.5 * DAY, status=TICK_SKIPPED))
    db.record_tick(
        TickRecord("l", "s", "sensor", tick_time=now - 200 * DAY), [run("keyed", run_key="k")]
    )

    counts = db.prune(now, Retention())
    assert counts == {"runs": 1, "logs": 6, "ticks": 3}
    with pytest.raises(RunNotFound):
        db.get_run("old")
    assert db.run_events("old") == [] and db.read_logs("old") == []
    assert len(db.read_logs("stuck")) == 3  # never a run that is not final, nor its logs
    assert db.get_run("mid").status == FAILURE and db.read_logs("mid") == []
    assert len(db.read_logs("new")) == 3
    assert [(t.status, t.tick_time) for t in db.list_ticks("l", "s", "sensor")] == [
        (TICK_SKIPPED, now - 0.5 * DAY),
        (TICK_SUCCESS, now - 2 * DAY),
    ]
    assert db.prune(now, Retention()) == {"runs": 0, "logs": 0, "ticks": 0}
    # Keeping forever keeps; the used run_key stays used whatever goes.
    assert db.prune(now + 1e6 * DAY, Retention(None, None, None, None)) == {
        "runs": 0,
        "logs": 0,
        "ticks": 0,
    }
    db.update_run("keyed", status=SUCCESS, ended_at=now)
    db.prune(now + 1e6 * DAY, Retention())
    _, created = db.record_tick(
        TickRecord("l", "s", "sensor", tick_time=now), [run("again", run_key="k")]
    )
    assert created == []
    assert db.integrity_problems() == []


def test_prune_in_chunks(db: SqliteStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    import workspace_manager.storage.sqlite as sql

    monkeypatch.setattr(sql, "PRUNE_CHUNK", 7)
    for i in range(30):
        db.add_run(run(f"r{i:02}", status=SUCCESS, ended_at=1.0))
        db.record_tick(TickRecord("l", "s", "sensor", tick_time=1.0, status=TICK_SKIPPED))
    assert db.prune(10 * DAY, Retention(runs_days=1)) == {"runs": 30, "logs": 0, "ticks": 30}
    assert db.list_runs() == []


def test_open_storage_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSM_STATE_DIR", str(tmp_path / "st"))
    assert database_path("abc") == tmp_path / "st" / "abc" / "runs.db"
    with pytest.raises(StorageError) as caught:
        open_storage("abc", create=False)
    assert "no runs recorded yet" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "st" / "abc").exists()
    store = open_storage("abc")
    store.add_run(run("r1"))
    store.close()
    again = open_storage("abc", create=False)
    assert again.get_run("r1").run_id == "r1"
    again.close()


def test_not_a_database_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StorageError) as caught:
        SqliteStorage(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_prune_deletes_big_logs_in_bounded_transactions(
    db: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workspace_manager.storage.sqlite as sql

    monkeypatch.setattr(sql, "PRUNE_LOG_LINES", 7)
    monkeypatch.setattr(sql, "PRUNE_CHUNK", 2)
    deleted_per_transaction = []
    real_write = db._write

    import contextlib

    @contextlib.contextmanager
    def counting_write():
        with real_write() as conn:
            before = conn.execute("SELECT count(*) FROM run_logs").fetchone()[0]
            yield conn
            after = conn.execute("SELECT count(*) FROM run_logs").fetchone()[0]
            deleted_per_transaction.append(before - after)

    for rid, lines in (("big", 30), ("a", 2), ("b", 2), ("c", 2), ("keep", 5)):
        db.add_run(run(rid))
        db.append_logs([LogLine(rid, 1.0, "stdout", str(i)) for i in range(lines)])
        if rid != "keep":
            db.update_run(rid, status=SUCCESS, ended_at=1.0)
    monkeypatch.setattr(db, "_write", counting_write)
    # runs_days alone: the runs' lines go first in bounded chunks, then the runs.
    counts = db.prune(10 * DAY, Retention(runs_days=1, logs_days=None))
    assert counts["logs"] == 36 and counts["runs"] == 4
    assert max(deleted_per_transaction) <= 7
    assert len(db.read_logs("keep")) == 5


STORAGE_IMPORTS = """
import sys
before = set(sys.modules)
from workspace_manager.storage import paths, retention, writer
from workspace_manager.storage.records import RunRecord
from workspace_manager.storage.sqlite import SqliteStorage

store = SqliteStorage(sys.argv[1])
store.add_run(RunRecord("r1", "loc", "job"))
store.get_run("r1")
store.close()
tops = {m.split(".")[0] for m in set(sys.modules) - before}
# _sysconfigdata_*: the standard library's generated platform data (sysconfig).
print(sorted(t for t in tops - set(sys.stdlib_module_names) - {"workspace_manager"}
             if not t.startswith("_sysconfigdata_")))
"""


def test_the_storage_imports_only_the_standard_library(tmp_path: Path) -> None:
    """Every CLI command that reads runs imports the storage: it must not pay for a query
    builder's or a driver's import (docs/daemon.md, "What the storage chose, and why")."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", STORAGE_IMPORTS, str(tmp_path / "runs.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.strip() == "[]"


def test_one_connection_per_thread_and_close_closes_them_all(tmp_path: Path) -> None:
    import sqlite3
    import threading

    store = SqliteStorage(tmp_path / "runs.db")
    store.add_run(run("r0"))
    seen = []

    def use(i: int) -> None:
        store.add_run(run(f"r{i}"))
        with store._read() as first:
            pass
        assert store.get_run(f"r{i}").run_id == f"r{i}"
        with store._write() as again:
            assert again is first  # the thread's own, kept for its every call
        seen.append(first)

    threads = [threading.Thread(target=use, args=(i,)) for i in range(1, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(c) for c in seen}) == 3  # one each
    with store._read() as mine:
        assert all(mine is not c for c in seen)
    # A new thread's connection closes those of the threads that ended.
    late = threading.Thread(target=store.list_runs)
    late.start()
    late.join()
    for conn in seen:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        mine.execute("SELECT 1")
    with pytest.raises(StorageError, match="closed"):
        store.list_runs()


def test_a_value_json_cannot_hold_is_a_one_line_storage_error(db: SqliteStorage) -> None:
    with pytest.raises(StorageError) as caught:
        db.add_run(run("r1", run_config={"x": object()}))
    assert "\n" not in str(caught.value)
    db.add_run(run("r2"))
    with pytest.raises(StorageError):
        db.update_run("r2", tags={"t": {1, 2}})
    assert db.get_run("r2").tags == {}  # the transaction was rolled back
    assert [r.run_id for r in db.list_runs()] == ["r2"]


def test_run_id_prefix_is_exact_about_case_and_wildcards(db: SqliteStorage) -> None:
    """The prefix lookup is a range on run_id: `%` and `_` are plain characters and case
    matters (SQLite's LIKE would match both otherwise)."""
    db.add_run(run("abcd_1234"))
    db.add_run(run("ABCD%5678"))
    assert db.get_run("abcd_").run_id == "abcd_1234"
    assert db.get_run("ABCD%").run_id == "ABCD%5678"
    for missing in ("abcd%", "ABCD_", "abce", "ab_d"):
        with pytest.raises(RunNotFound):
            db.get_run(missing)


def test_record_ticks_keeps_or_drops_each_tick_on_its_own(tmp_path: Path) -> None:
    """One transaction for many ticks (the writer's batches); a tick that fails is rolled
    back alone, with its runs and its state, and the others are kept."""
    from workspace_manager.storage.records import InstigatorState, TickRecord

    store = SqliteStorage(tmp_path / "runs.db")
    try:
        out = store.record_ticks(
            [
                (
                    TickRecord("loc", "a", "sensor", 1.0),
                    [RunRecord("ra", "loc", "job", run_key="k")],
                    InstigatorState("loc", "a", "sensor", cursor="1"),
                ),
                (
                    TickRecord("loc", "b", "sensor", 1.0, tick_id=999),  # no such tick
                    [RunRecord("rb", "loc", "job", run_key="k")],
                    InstigatorState("loc", "b", "sensor", cursor="1"),
                ),
                (
                    TickRecord("loc", "a", "sensor", 2.0),
                    [RunRecord("ra2", "loc", "job", run_key="k")],  # used by the first
                    InstigatorState("loc", "a", "sensor", cursor="2"),
                ),
            ]
        )
        assert isinstance(out[1], Exception) and "no tick 999" in str(out[1])
        first, third = out[0], out[2]
        assert not isinstance(first, Exception) and not isinstance(third, Exception)
        assert [r.run_id for r in first[1]] == ["ra"]
        assert third[1] == [] and third[0].run_keys_skipped == ["k"]
        assert [r.run_id for r in store.list_runs(limit=None)] == ["ra"]
        assert store.get_instigator("loc", "a", "sensor").cursor == "2"
        assert store.get_instigator("loc", "b", "sensor").cursor is None
        assert [t.tick_time for t in store.list_ticks("loc", "a", "sensor")] == [2.0, 1.0]
        assert store.list_ticks("loc", "b", "sensor") == []
        assert store.integrity_problems() == []
    finally:
        store.close()

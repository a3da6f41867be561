"""Readers never block the writer (WAL), two writers wait for each other, and a `kill -9`
of a writer at any moment loses no committed record and never corrupts the database."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, List, Set

import pytest

from workspace_manager.storage.records import SUCCESS, RunRecord
from workspace_manager.storage.sqlite import SqliteStorage

# -- readers and writers -------------------------------------------------------------------


def test_a_long_read_transaction_never_blocks_the_writer(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "runs.db")
    store.add_run(RunRecord("before", "loc", "job"))
    holding, release, seen = threading.Event(), threading.Event(), []

    def reader() -> None:
        reader_store = SqliteStorage(tmp_path / "runs.db", create=False)
        with reader_store._read() as conn:
            seen.append(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
            holding.set()
            release.wait(60)
            # Still the same snapshot: the transaction was open across every write below.
            seen.append(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
        reader_store.close()

    thread = threading.Thread(target=reader)
    thread.start()
    assert holding.wait(30)
    # Had the reader blocked it, a commit would wait busy_timeout (5 s) then raise
    # "database is locked"; they all commit.
    for i in range(100):
        store.add_run(RunRecord(f"r{i}", "loc", "job"))
        store.update_run(f"r{i}", status=SUCCESS)
    release.set()
    thread.join(60)
    assert seen == [1, 1]
    assert len(store.list_runs(limit=None)) == 101
    store.close()


READER = textwrap.dedent(
    """
    import sys
    from workspace_manager.storage.sqlite import SqliteStorage
    store = SqliteStorage(sys.argv[1], create=False)
    with store._read() as conn:
        count = lambda: conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        print("holding", count(), flush=True)
        sys.stdin.readline()
        print("still", count(), flush=True)
    store.close()
    """
)


def test_a_reader_process_never_blocks_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SqliteStorage(path)
    store.add_run(RunRecord("before", "loc", "job"))
    child = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().split() == ["holding", "1"]
        for i in range(100):
            store.add_run(RunRecord(f"r{i}", "loc", "job"))
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["still", "1"]
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert len(store.list_runs(limit=None)) == 101
    store.close()


WRITER_HOLDING = textwrap.dedent(
    """
    import sys, time
    from workspace_manager.storage.records import RunRecord
    from workspace_manager.storage.sqlite import SqliteStorage
    store = SqliteStorage(sys.argv[1], create=False)
    with store._write() as conn:
        store._insert_runs(conn, [RunRecord("held", "loc", "job")], "", time.time(), None)
        print("holding", flush=True)
        sys.stdin.readline()
        time.sleep(0.5)
    store.close()
    """
)


def test_two_writers_wait_for_each_other_and_opening_never_waits(tmp_path: Path) -> None:
    """The manager and `wsm job execute` both write: the second waits (busy_timeout) for
    the first instead of failing. And while a write transaction is open, a CLI can open
    the database and read (opening an up-to-date database takes no write lock)."""
    path = tmp_path / "runs.db"
    SqliteStorage(path).close()
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_HOLDING, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "holding"
        # Would raise "database is locked" after 5 s if opening or reading needed the lock.
        store = SqliteStorage(path, create=False)
        assert store.list_runs() == [] and child.poll() is None
        child.stdin.write("release\n")
        child.stdin.flush()
        store.add_run(RunRecord("mine", "loc", "job"))  # waits for the child's commit
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert {r.run_id for r in store.list_runs()} == {"held", "mine"}
    store.close()


# -- kill -9 ---------------------------------------------------------------------------------

# Writes runs, logs, final statuses and sensor ticks with run_keys in a loop, printing what
# each call committed only after it returned. Its run_keys repeat within a life and across
# lives (i restarts at 0), so the dedupe is exercised across every kill.
CHILD = textwrap.dedent(
    """
    import sys, time, uuid
    from workspace_manager.storage.records import (
        InstigatorState, LogLine, RunRecord, TickRecord)
    from workspace_manager.storage.sqlite import SqliteStorage

    def say(*words):
        sys.stdout.write(" ".join(str(w) for w in words) + "\\n")
        sys.stdout.flush()

    say("opening")
    store = SqliteStorage(sys.argv[1])
    say("ready")
    i = 0
    while True:
        i += 1
        rid = uuid.uuid4().hex
        store.add_run(RunRecord(rid, "loc", "job", tags={"i": str(i)}))
        say("run", rid)
        store.append_logs([LogLine(rid, time.time(), "stdout", "x" * 200) for _ in range(25)])
        say("logs", rid, 25)
        store.update_run(rid, status="SUCCESS")
        say("final", rid)
        runs = [RunRecord(uuid.uuid4().hex, "loc", "job", run_key=f"k{(i + j) % 40}")
                for j in range(3)]
        tick, created = store.record_tick(
            TickRecord("loc", "sen", "sensor", time.time(), status="success"),
            runs,
            InstigatorState("loc", "sen", "sensor", cursor=str(i)),
        )
        say("tick", tick.tick_id, *[r.run_id for r in created])
    """
)


def _committed(output: str) -> Dict[str, Set[str]]:
    seen: Dict[str, Set[str]] = {"run": set(), "logs": set(), "final": set(), "tick": set()}
    for line in output.split("\n")[:-1]:  # the last piece may be a line cut by the kill
        words = line.split()
        if not words or words[0] in ("opening", "ready"):
            continue
        if words[0] == "tick":
            seen["tick"].add(words[1])
            seen["run"].update(words[2:])
        else:
            seen[words[0]].add(words[1])
    return seen


def _check_database(path: Path, committed: Dict[str, Set[str]]) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "runs" not in tables:
            # Killed between making the file and committing the first migration: nothing
            # was committed, and the migration left nothing half-made.
            assert not any(committed.values()) and "schema_version" not in tables
            return
        runs = {r[0]: r[1] for r in conn.execute("SELECT run_id, status FROM runs")}
        assert committed["run"] <= set(runs), "a committed run is missing"
        assert all(runs[r] == SUCCESS for r in committed["final"])
        for rid in committed["logs"]:
            lines = conn.execute("SELECT seq FROM run_logs WHERE run_id=? ORDER BY seq", (rid,))
            assert [r[0] for r in lines] == list(range(1, 26))
        ticks = {str(r[0]) for r in conn.execute("SELECT tick_id FROM ticks")}
        assert committed["tick"] <= ticks, "a committed tick is missing"
        twice = conn.execute(
            "SELECT run_key, count(*) FROM runs WHERE run_key IS NOT NULL"
            " GROUP BY location, json_extract(origin, '$.name'), run_key HAVING count(*) > 1"
        ).fetchall()
        assert twice == [], f"run_keys launched twice: {twice}"
        keyed = conn.execute("SELECT count(*) FROM runs WHERE run_key IS NOT NULL").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM run_keys").fetchone()[0] == keyed
        # Every tick's run ids exist, and no tick names a run twice.
        for (run_ids,) in conn.execute("SELECT run_ids FROM ticks"):
            ids = json.loads(run_ids)
            assert len(ids) == len(set(ids)) and set(ids) <= set(runs)


def _migration_state(path: Path) -> str:
    if not path.exists():
        return "no file"
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    return "migrated" if "schema_version" in names else "empty file"


def _kill_loop(tmp_path: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    shared = tmp_path / "shared" / "runs.db"
    total: Dict[str, Set[str]] = {"run": set(), "logs": set(), "final": set(), "tick": set()}
    outcomes: List[str] = []
    for n in range(rounds):
        # The first rounds start on a fresh file and die while it is made and migrated (or
        # just after); the others die mid-loop on one shared file.
        fresh = n < 5
        path = tmp_path / f"fresh{n}" / "runs.db" if fresh else shared
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert child.stdout is not None
            if fresh:
                assert child.stdout.readline().strip() == "opening", child.stderr
                time.sleep(rng.uniform(0.0, 0.15))
            else:
                assert child.stdout.readline().strip() == "opening", child.stderr
                assert child.stdout.readline().strip() == "ready", child.stderr
                time.sleep(rng.uniform(0.0, 0.25))
            os.kill(child.pid, signal.SIGKILL)
            out, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL, err
        committed = _committed(out)
        if fresh:
            outcomes.append(_migration_state(path))
        if not fresh:
            for kind, ids in committed.items():
                total[kind] |= ids
            committed = total
        if path.exists():
            _check_database(path, committed)
            # And the storage opens it again (recovery of the WAL by the next opener).
            SqliteStorage(path).close()
    print({kind: len(ids) for kind, ids in total.items()}, "fresh files:", outcomes)
    assert total["run"], "the child never got to write: the kill loop proved nothing"


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing_committed(tmp_path: Path) -> None:
    _kill_loop(tmp_path, rounds=20, seed=int(os.environ.get("WSM_TEST_SEED", "9")))


@pytest.mark.slow
def test_kill_9_fifty_times(tmp_path: Path) -> None:
    _kill_loop(tmp_path, rounds=50, seed=int(time.time()))


def test_one_storage_shared_by_many_threads(tmp_path: Path) -> None:
    """Each thread gets its own connection from the pool; writes serialize, reads go
    beside them, and end_seq stays one gapless counter."""
    store = SqliteStorage(tmp_path / "runs.db")
    errors: List[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                rid = f"t{n}-{i:02}"
                store.add_run(RunRecord(rid, "loc", "job"))
                store.list_runs(limit=5)
                store.update_run(rid, status=SUCCESS)
                assert store.get_run(rid).status == SUCCESS
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    done = store.finished_runs_after(0, limit=1000)
    assert [r.end_seq for r in done] == list(range(1, 321))
    assert store.max_end_seq() == 320 and store.run_counts()[SUCCESS] == 320
    store.close()

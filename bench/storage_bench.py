"""Cost of the run database's operations (storage/sqlite.py) against SQLite's own floor.

    python bench/storage_bench.py [--runs N]

The floor is a raw `sqlite3` INSERT + COMMIT of one small row in WAL mode with
synchronous=NORMAL (what every write of the storage pays at least). Then, on a fresh
database: add_run, update_run (one status change each), record_tick creating 10 runs with
run_keys, 10,000 log lines (through `AsyncStorage.log`, batched, and as 500-line
`append_logs`), paging through 10,000 runs 50 at a time (`list_runs` with `before`), and
`get_run` by an 8-character prefix. Prints a table, then one JSON line with every figure
(microseconds, p50 and p99 per operation). Under a minute on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List

from workspace_manager.storage.records import (
    STARTED,
    TICK_SUCCESS,
    LogLine,
    RunRecord,
    TickRecord,
)
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.storage.writer import AsyncStorage


def _stats(samples: List[float]) -> Dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "n": len(samples),
        "p50_us": round(statistics.median(ordered) * 1e6, 1),
        "p99_us": round(p99 * 1e6, 1),
        "mean_us": round(statistics.fmean(ordered) * 1e6, 1),
    }


def _time_each(n: int, op: Callable[[int], object]) -> Dict[str, float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        op(i)
        samples.append(time.perf_counter() - start)
    return _stats(samples)


def floor(folder: Path, n: int) -> Dict[str, float]:
    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT)")

    def op(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (uuid.uuid4().hex, "x" * 100))
        conn.execute("COMMIT")

    result = _time_each(n, op)
    conn.close()
    return result


async def _log_burst(store: SqliteStorage, run_id: str, lines: int) -> Dict[str, float]:
    wrapped = AsyncStorage(store)
    lags: List[float] = []

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - start - 0.005)

    task = asyncio.ensure_future(probe())
    start = time.perf_counter()
    for i in range(lines):
        wrapped.log(LogLine(run_id, time.time(), "stdout", f"line {i} " + "x" * 70))
        if i % 500 == 0:
            await asyncio.sleep(0)
    calls_done = time.perf_counter() - start
    await wrapped.flush_logs()
    stored = time.perf_counter() - start
    task.cancel()
    return {
        "lines": lines,
        "log_call_us": round(calls_done / lines * 1e6, 2),
        "all_stored_ms": round(stored * 1e3, 1),
        "us_per_line_stored": round(stored / lines * 1e6, 2),
        "loop_lag_max_ms": round(max(lags or [0.0]) * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs to page through")
    parser.add_argument("--ops", type=int, default=1000, help="samples per single operation")
    args = parser.parse_args()
    results: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        results["floor_sqlite3_insert_commit"] = floor(folder, args.ops)
        store = SqliteStorage(folder / "runs.db")
        ids = [uuid.uuid4().hex for _ in range(args.ops)]
        results["add_run"] = _time_each(
            args.ops,
            lambda i: store.add_run(
                RunRecord(ids[i], "loc", "job", tags={"team": "a"}, origin={"kind": "manual"})
            ),
        )
        results["update_run"] = _time_each(
            args.ops, lambda i: store.update_run(ids[i], status=STARTED, pid=1000 + i)
        )
        results["record_tick_10_runs"] = _time_each(
            max(50, args.ops // 5),
            lambda i: store.record_tick(
                TickRecord("loc", "sen", "sensor", time.time(), status=TICK_SUCCESS),
                [RunRecord(uuid.uuid4().hex, "loc", "job", run_key=f"k{i}-{j}") for j in range(10)],
            ),
        )
        results["log_10000_lines_async"] = asyncio.run(_log_burst(store, ids[0], 10_000))
        batch = [LogLine(ids[1], time.time(), "stdout", "y" * 80) for _ in range(500)]
        direct = _time_each(20, lambda i: store.append_logs(batch))
        results["append_logs_500_lines"] = direct
        # Fill to --runs runs (the ones above count), then page through them all.
        have = len(store.list_runs(limit=None))
        now = time.time()
        for i in range(max(0, args.runs - have)):
            store.add_run(RunRecord(uuid.uuid4().hex, "loc", f"job{i % 7}", created_at=now + i))
        total = len(store.list_runs(limit=None))
        pages: List[float] = []
        before = None
        seen = 0
        while True:
            start = time.perf_counter()
            page = store.list_runs(limit=50, before=before)
            pages.append(time.perf_counter() - start)
            if not page:
                break
            seen += len(page)
            before = (page[-1].created_at, page[-1].run_id)
        assert seen == total, (seen, total)
        results["list_runs_page_50"] = {**_stats(pages), "runs": total}
        all_ids = [r.run_id for r in store.list_runs(limit=None)]
        prefixes = [random.choice(all_ids)[:8] for _ in range(args.ops)]
        results["get_run_by_prefix"] = _time_each(args.ops, lambda i: store.get_run(prefixes[i]))
        store.close()

    base = results["floor_sqlite3_insert_commit"]["p50_us"]
    print(f"{'operation':32} {'p50 us':>10} {'p99 us':>10} {'x floor':>8}")
    for op, figures in results.items():
        if "p50_us" in figures:
            figures["x_floor_p50"] = round(figures["p50_us"] / base, 1) if base else 0.0
            print(
                f"{op:32} {figures['p50_us']:>10} {figures['p99_us']:>10}"
                f" {figures['x_floor_p50']:>8}"
            )
    logs = results["log_10000_lines_async"]
    print(
        f"10,000 lines via AsyncStorage.log: {logs['log_call_us']} us per call on the loop,"
        f" all stored in {logs['all_stored_ms']} ms, loop lag max {logs['loop_lag_max_ms']} ms"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()

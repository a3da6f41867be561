"""The web pages on a large workspace: 100 locations and 10,000 runs kept.

    python bench/pages_bench.py [--locations 100] [--runs 10000] [--lines 1000] [-n 200]

The manager's own web server and app (web/server.py, web/app.py), a real
`Api` over a real SQLite database (in a temporary folder) through AsyncStorage. Prints one
JSON object: for each page (loc7 has `--instigators` schedules and as many sensors), the first request (Jinja2 imported and the template compiled
then), and the median and p99 in milliseconds of the first byte (status line and headers
read) and of the full answer, over `-n` sequential requests, each on a new connection, and
the event loop thread's CPU time per request (`loop_cpu_ms`: steady under other load).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workspace_manager.http.api import Api, ApiSources  # noqa: E402
from workspace_manager.http.view import LocationView, ManagerView  # noqa: E402
from workspace_manager.storage.records import LogLine, RunRecord  # noqa: E402
from workspace_manager.storage.sqlite import SqliteStorage  # noqa: E402
from workspace_manager.storage.writer import AsyncStorage  # noqa: E402
from workspace_manager.web.app import build_app  # noqa: E402
from workspace_manager.web.context import WebContext  # noqa: E402
from workspace_manager.web.server import WebServer  # noqa: E402

STATUSES = ["SUCCESS"] * 6 + ["FAILURE", "CANCELED", "STARTED", "QUEUED"]


def fill(storage: SqliteStorage, locations: int, runs: int, lines: int) -> str:
    base = time.time() - runs
    first = ""
    for i in range(runs):
        run = storage.add_run(
            RunRecord(uuid.uuid4().hex, f"loc{i % locations}", f"job{i % 20}", created_at=base + i)
        )
        status = STATUSES[i % len(STATUSES)]
        if status != "QUEUED":
            final = status in ("SUCCESS", "FAILURE", "CANCELED")
            storage.update_run(run.run_id, status=status, ended_at=base + i + 1 if final else None)
        first = first or run.run_id
    storage.append_logs(
        LogLine(first, base, "stdout", f"line {i} " + "x" * 60) for i in range(lines)
    )
    return first


class Daemon:
    """The daemon's `instigators()`: `--instigators` schedules and as many sensors in loc7
    (the bench repository of bench/gen_repo.py has 200 of each), 1 elsewhere."""

    def __init__(self, locations: int, per_location: int) -> None:
        self.items: List[Dict[str, Any]] = []
        for i in range(locations):
            n = per_location if i == 7 else 1
            for kind in ("schedule", "sensor"):
                self.items += [
                    {
                        "location": f"loc{i}",
                        "name": f"{kind}{j}",
                        "kind": kind,
                        "job_name": f"job{j % 20}",
                        "status": "RUNNING" if j % 2 else "STOPPED",
                        "cron_schedule": "0 * * * *" if kind == "schedule" else None,
                        "execution_timezone": "UTC" if kind == "schedule" else None,
                        "next_tick": time.time() + 60 if kind == "schedule" else None,
                        "minimum_interval_seconds": 30.0 if kind == "sensor" else None,
                        "cursor": None,
                        "last_tick": None,
                    }
                    for j in range(n)
                ]

    def instigators(self, kind: Any = None) -> List[Dict[str, Any]]:
        return [dict(i) for i in self.items if kind is None or i["kind"] == kind]


def timed(port: int, path: str) -> Tuple[float, float]:
    """(first byte, full answer) in ms of one GET on a new connection, as a browser's first
    load (on a kept-alive http.client connection, delayed ACKs add 40 ms to some answers)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        first = time.perf_counter() - started
        resp.read()
    finally:
        conn.close()
    assert resp.status == 200, (path, resp.status)
    return first * 1000, (time.perf_counter() - started) * 1000


def p99(values: List[float]) -> float:
    return sorted(values)[max(int(len(values) * 0.99) - 1, 0)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--locations", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--instigators", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        storage = SqliteStorage(Path(tmp) / "runs.db")
        run_id = fill(storage, args.locations, args.runs, args.lines)
        store = AsyncStorage(storage)
        view = ManagerView(
            True,
            time.time(),
            tuple(
                LocationView(
                    f"loc{i}",
                    "ready",
                    pid=1000 + i,
                    python="3.11.2",
                    environment="k" * 16,
                    uptime_seconds=100.0,
                    rss_bytes=40_000_000,
                )
                for i in range(args.locations)
            ),
        )
        docs: List[Dict[str, Any]] = [
            {
                "name": f"loc{i}",
                "state": "ready",
                "repositories": [
                    {
                        "name": "repo",
                        "jobs": [
                            {"name": f"job{j}", "description": "d", "tags": {}} for j in range(20)
                        ],
                    }
                ],
            }
            for i in range(args.locations)
        ]
        daemon = Daemon(args.locations, args.instigators)
        api = Api(ApiSources(storage=lambda: store, locations=lambda: docs, daemon=lambda: daemon))
        ctx = WebContext(view=lambda: view, api=api, secret=b"s" * 32)
        server = WebServer("127.0.0.1", 0, build_app(ctx))
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)[1]

        async def thread_cpu() -> float:
            return time.thread_time()

        def loop_cpu() -> float:
            """CPU seconds the event loop's thread has used: what a page costs the manager's
            loop, whatever else the machine runs (SQLite reads are in other threads)."""
            return asyncio.run_coroutine_threadsafe(thread_cpu(), loop).result(30)

        pages = {
            "overview": "/",
            "location": "/locations/loc3",
            "location_400_instigators": "/locations/loc7",
            "runs_page": "/runs",
            "runs_failed": "/runs?status=FAILURE",
            "runs_location_job": "/runs?location=loc3&job=job3",
            "run_1000_lines": f"/runs/{run_id}",
        }
        out: Dict[str, Any] = {
            "locations": args.locations,
            "runs": args.runs,
            "log_lines": args.lines,
            "requests": args.n,
        }
        for name, path in pages.items():
            cold = timed(port, path)
            firsts, fulls = [], []
            cpu0 = loop_cpu()
            for _ in range(args.n):
                a, b = timed(port, path)
                firsts.append(a)
                fulls.append(b)
            cpu = (loop_cpu() - cpu0) / args.n * 1000
            out[name] = {
                "cold_ms": round(cold[1], 1),
                "first_byte_p50_ms": round(statistics.median(firsts), 2),
                "first_byte_p99_ms": round(p99(firsts), 2),
                "full_p50_ms": round(statistics.median(fulls), 2),
                "full_p99_ms": round(p99(fulls), 2),
                "loop_cpu_ms": round(cpu, 2),
            }
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
        asyncio.run_coroutine_threadsafe(store.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        storage.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""The JSON API on a large run database: answer times, and /livez while the API is busy.

    python bench/api_bench.py [--runs 10000] [--lines 10000]

The real web server (web/: uvicorn, Starlette) with the API on its own event loop, a real SQLite database (in a
temporary folder) through AsyncStorage. Prints one JSON object: medians and p99s in
milliseconds of
- GET /api/runs?limit=50 (the web page's first page) and ?status=FAILURE,
- paging through every run with limit=1000 (total seconds),
- GET /api/runs/ID/logs?limit=1000 on a run with --lines lines,
- GET /livez alone, then while 4 client processes hammer /api/runs?limit=1000 (the loop never
  waits on the disk, so this should barely move).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workspace_manager.http.api import Api, ApiSources  # noqa: E402
from workspace_manager.http.view import ManagerView  # noqa: E402
from workspace_manager.storage.records import LogLine, RunRecord  # noqa: E402
from workspace_manager.storage.sqlite import SqliteStorage  # noqa: E402
from workspace_manager.storage.writer import AsyncStorage  # noqa: E402
from workspace_manager.web.app import build_app  # noqa: E402
from workspace_manager.web.context import WebContext  # noqa: E402
from workspace_manager.web.server import WebServer  # noqa: E402


def fill(storage: SqliteStorage, runs: int, lines: int) -> str:
    base = time.time() - runs
    statuses = ["SUCCESS"] * 8 + ["FAILURE", "CANCELED"]
    first = ""
    for i in range(runs):
        run = storage.add_run(
            RunRecord(uuid.uuid4().hex, f"loc{i % 10}", f"job{i % 50}", created_at=base + i)
        )
        storage.update_run(run.run_id, status=statuses[i % 10], ended_at=base + i + 1)
        first = first or run.run_id
    storage.append_logs(
        LogLine(first, base, "stdout", f"line {i} " + "x" * 60) for i in range(lines)
    )
    return first


def timed(conn: http.client.HTTPConnection, path: str) -> float:
    started = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200, (path, resp.status)
    return (time.perf_counter() - started) * 1000


def summary(samples: List[float]) -> Dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--lines", type=int, default=10000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        storage = SqliteStorage(Path(tmp) / "runs.db", create=True)
        t0 = time.perf_counter()
        run_id = fill(storage, opts.runs, opts.lines)
        fill_s = time.perf_counter() - t0
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        store = AsyncStorage(storage)
        ctx = WebContext(
            view=lambda: ManagerView(True, time.time()), api=Api(ApiSources(storage=lambda: store))
        )
        server = WebServer("127.0.0.1", 0, build_app(ctx))
        _, port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        out: Dict[str, object] = {
            "runs": opts.runs,
            "log_lines": opts.lines,
            "fill_seconds": round(fill_s, 1),
        }
        out["runs_first_page"] = summary([timed(conn, "/api/runs?limit=50") for _ in range(200)])
        out["runs_failed_page"] = summary(
            [timed(conn, "/api/runs?limit=50&status=FAILURE") for _ in range(100)]
        )
        started = time.perf_counter()
        path, pages = "/api/runs?limit=1000", 0
        while path:
            conn.request("GET", path)
            page = json.loads(conn.getresponse().read())
            pages += 1
            path = f"/api/runs?limit=1000&before={page['next']}" if page["next"] else ""
        out["page_through_all_seconds"] = round(time.perf_counter() - started, 3)
        out["pages"] = pages
        out["logs_1000_lines"] = summary(
            [timed(conn, f"/api/runs/{run_id}/logs?limit=1000") for _ in range(50)]
        )
        out["livez_idle"] = summary([timed(conn, "/livez") for _ in range(300)])
        # the load comes from other processes, as a page's users would: no GIL shared with us
        hammer = (
            "import http.client, sys\n"
            "c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=30)\n"
            "while True:\n"
            "    c.request('GET', '/api/runs?limit=1000'); c.getresponse().read()\n"
        )
        workers = [subprocess.Popen([sys.executable, "-c", hammer, str(port)]) for _ in range(4)]
        time.sleep(1.0)
        out["livez_during_api_load"] = summary([timed(conn, "/livez") for _ in range(300)])
        for w in workers:
            w.kill()
            w.wait()
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        asyncio.run_coroutine_threadsafe(store.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

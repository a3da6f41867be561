"""The daemon's own CPU (daemon/service.py + loops.py + the run database): N schedules and N
sensors spread over 10 locations that answer at once (no loader), on a real SQLite file.

    .venv/bin/python bench/daemon_loop_bench.py [--per-kind 1000] [--interval 30] [--seconds 60]

Prints one JSON object: CPU seconds and % of one core over the window (after the first
burst of sensor ticks), ticks recorded, and the idle cost (sensors far from due).
What it leaves out: the location calls' socket and msgpack cost, the loaders themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

from workspace_manager.daemon.service import Daemon
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.storage.writer import AsyncStorage
from workspace_manager.supervisor.state import State
from workspace_manager.workspace.model import Workspace

LOCATIONS = 10


class Location:
    state = State.READY

    def __init__(self, name: str, per_kind: int, interval: float) -> None:
        self.snapshot = {
            "repositories": [
                {
                    "name": "repo",
                    "jobs": [{"name": "job", "tags": {}}],
                    "schedules": [
                        {
                            "name": f"s{i}",
                            "job_name": "job",
                            "cron_schedule": "0 * * * *",
                            "default_status": "RUNNING",
                        }
                        for i in range(per_kind)
                    ],
                    "sensors": [
                        {
                            "name": f"x{i}",
                            "job_name": "job",
                            "default_status": "RUNNING",
                            "minimum_interval_seconds": interval,
                        }
                        for i in range(per_kind)
                    ],
                }
            ]
        }

    async def call(self, method: str, params: Dict[str, Any], timeout: Any = None) -> Any:
        return {"run_requests": [], "skip_reason": "nothing", "cursor": params.get("cursor")}


class Events:
    ticks = 0

    def tick(self, tick: Any) -> None:
        self.ticks += 1

    def run(self, record: Any, event: str) -> None:
        pass

    def message(self, text: str) -> None:
        print(text)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def window(events: Events, seconds: float) -> Dict[str, float]:
    c0, t0, n0 = cpu(), time.monotonic(), events.ticks
    await asyncio.sleep(seconds)
    used, wall = cpu() - c0, time.monotonic() - t0
    return {
        "cpu_seconds": round(used, 3),
        "core_percent": round(100 * used / wall, 2),
        "ticks": events.ticks - n0,
    }


async def measure(per_kind: int, interval: float, seconds: float, folder: Path) -> Dict[str, Any]:
    result: Dict[str, Any] = {"instigators": 2 * per_kind, "sensor_interval": interval}
    for label, every in (("idle", 10 * 86400.0), ("ticking", interval)):
        locations = {
            f"loc{i}": Location(f"loc{i}", per_kind // LOCATIONS, every) for i in range(LOCATIONS)
        }
        store = AsyncStorage(SqliteStorage(folder / f"{label}.db"))
        events = Events()
        daemon = Daemon(
            store=store,
            locations=lambda locations=locations: locations,  # type: ignore[misc]
            workspace=lambda: Workspace(path=None, root=folder, locations=()),
            events=events,
        )
        started = time.monotonic()
        await daemon.start()
        result[f"{label}_start_seconds"] = round(time.monotonic() - started, 3)
        await asyncio.sleep(min(interval, seconds) + 5)  # past the first burst
        result[label] = await window(events, seconds)
        await daemon.stop()
        await store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = asyncio.run(measure(args.per_kind, args.interval, args.seconds, Path(folder)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()

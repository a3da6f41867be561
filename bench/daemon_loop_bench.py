"""The daemon's own CPU (daemon/service.py + loops.py + the run database): N schedules and N
sensors spread over 10 locations that answer at once (no loader), on a real SQLite file.

    .venv/bin/python bench/daemon_loop_bench.py [--per-kind 1000] [--interval 30] [--seconds 60]
        [--only ticking] [--profile FILE]

`--profile FILE` writes cProfile statistics of the ticking window (the event loop's thread
only) to FILE (`python -m pstats FILE`); the JSON gives the storage write thread's CPU in
`record_tick` (`write_cpu_seconds`).

Prints one JSON object: CPU seconds and % of one core over the window (after the first
burst of sensor ticks), ticks recorded, and the idle cost (sensors far from due).
What it leaves out: the location calls' socket and msgpack cost, the loaders themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

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


class WriteClock:
    """CPU seconds the storage's write thread spent in its writes (thread_time)."""

    def __init__(self, storage: SqliteStorage) -> None:
        self.seconds = 0.0
        for name in ("record_tick", "record_ticks", "set_instigator"):
            inner = getattr(storage, name, None)
            if inner is not None:
                setattr(storage, name, self._timed(inner))

    def _timed(self, inner: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - began

        return timed


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def window(
    events: Events, writes: WriteClock, seconds: float, profile: Optional[str] = None
) -> Dict[str, float]:
    profiler = None
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
    c0, t0, n0, w0 = cpu(), time.monotonic(), events.ticks, writes.seconds
    await asyncio.sleep(seconds)
    used, wall = cpu() - c0, time.monotonic() - t0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    return {
        "cpu_seconds": round(used, 3),
        "core_percent": round(100 * used / wall, 2),
        "ticks": events.ticks - n0,
        "write_cpu_seconds": round(writes.seconds - w0, 3),
    }


async def measure(
    per_kind: int,
    interval: float,
    seconds: float,
    folder: Path,
    only: Optional[str] = None,
    profile: Optional[str] = None,
) -> Dict[str, Any]:
    result: Dict[str, Any] = {"instigators": 2 * per_kind, "sensor_interval": interval}
    kinds: List[Any] = [("idle", 10 * 86400.0), ("ticking", interval)]
    for label, every in [k for k in kinds if only in (None, k[0])]:
        locations = {
            f"loc{i}": Location(f"loc{i}", per_kind // LOCATIONS, every) for i in range(LOCATIONS)
        }
        storage = SqliteStorage(folder / f"{label}.db")
        writes = WriteClock(storage)
        store = AsyncStorage(storage)
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
        result[label] = await window(
            events, writes, seconds, profile if label == "ticking" else None
        )
        await daemon.stop()
        await store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--only", choices=("idle", "ticking"))
    parser.add_argument("--profile", metavar="FILE", help="cProfile the ticking window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = asyncio.run(
            measure(
                args.per_kind, args.interval, args.seconds, Path(folder), args.only, args.profile
            )
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()

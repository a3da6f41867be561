"""An in-memory stand-in for storage.base.Storage (the subset the CLI and the API read), and
an AsyncStorage-like wrapper, for testing the surface before and apart from SQLite.

Where the real storage (storage/sqlite.py) is available, tests prefer it (`make_storage`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from workspace_manager.storage.base import RunNotFound
from workspace_manager.storage.records import (
    FINAL_STATUSES,
    RUN_STATUSES,
    LogLine,
    RunEvent,
    RunRecord,
    TickRecord,
)


class MemoryStorage:
    def __init__(self) -> None:
        self.runs: Dict[str, RunRecord] = {}
        self.events: Dict[str, List[RunEvent]] = {}
        self.logs: Dict[str, List[LogLine]] = {}
        self.ticks: List[TickRecord] = []
        self._end_seq = 0

    def add_run(self, run: RunRecord, message: str = "") -> RunRecord:
        run.created_at = run.created_at or time.time()
        self.runs[run.run_id] = run
        self.events[run.run_id] = [RunEvent(run.run_id, run.created_at, run.status, message)]
        return run

    def update_run(
        self, run_id: str, *, status: Optional[str] = None, message: str = "", **fields: Any
    ) -> RunRecord:
        run = self.get_run(run_id)
        if run.is_final:
            return run
        for key, value in fields.items():
            setattr(run, key, value)
        if status is not None:
            run.status = status
            self.events[run.run_id].append(RunEvent(run.run_id, time.time(), status, message))
            if status in FINAL_STATUSES:
                self._end_seq += 1
                run.end_seq = self._end_seq
        return run

    def get_run(self, run_id: str) -> RunRecord:
        if run_id in self.runs:
            return self.runs[run_id]
        found = [r for r in self.runs if r.startswith(run_id)] if len(run_id) >= 4 else []
        if len(found) == 1:
            return self.runs[found[0]]
        if len(found) > 1:
            raise RunNotFound(f"{run_id!r} is the start of {len(found)} run ids: give more of it")
        raise RunNotFound(f"no run {run_id!r}")

    def list_runs(
        self,
        *,
        statuses: Optional[Sequence[str]] = None,
        location: Optional[str] = None,
        job: Optional[str] = None,
        limit: Optional[int] = 50,
        before: Optional[Tuple[float, str]] = None,
    ) -> List[RunRecord]:
        runs = sorted(self.runs.values(), key=lambda r: (r.created_at, r.run_id), reverse=True)
        out = [
            r
            for r in runs
            if (not statuses or r.status in statuses)
            and (location is None or r.location == location)
            and (job is None or r.job == job)
            and (before is None or (r.created_at, r.run_id) < before)
        ]
        return out[:limit] if limit is not None else out

    def run_counts(self) -> Dict[str, int]:
        counts = {s: 0 for s in RUN_STATUSES}
        for run in self.runs.values():
            counts[run.status] += 1
        return counts

    def run_events(self, run_id: str) -> List[RunEvent]:
        return list(self.events.get(run_id, []))

    def append_logs(self, lines) -> None:  # type: ignore[no-untyped-def]
        for line in lines:
            kept = self.logs.setdefault(line.run_id, [])
            line.seq = len(kept) + 1
            kept.append(line)

    def read_logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> List[LogLine]:
        return [ln for ln in self.logs.get(run_id, []) if ln.seq > after_seq][:limit]

    def record_tick(self, tick: TickRecord, runs=(), state=None):  # type: ignore[no-untyped-def]
        tick.tick_id = len(self.ticks) + 1
        self.ticks.append(tick)
        return tick, []

    def list_ticks(
        self,
        location: Optional[str],
        name: str,
        kind: str,
        limit: int = 20,
        statuses: Optional[Sequence[str]] = None,
    ) -> List[TickRecord]:
        found = [
            t
            for t in reversed(self.ticks)
            if t.name == name
            and t.kind == kind
            and (location is None or t.location == location)
            and (not statuses or t.status in statuses)
        ]
        return found[:limit]

    def tick_counts(self) -> Dict[Tuple[str, str], int]:
        counts: Dict[Tuple[str, str], int] = {}
        for t in self.ticks:
            counts[(t.kind, t.status)] = counts.get((t.kind, t.status), 0) + 1
        return counts

    def close(self) -> None:
        pass


class AsyncWrapper:
    """Every method of the wrapped storage as a coroutine run in a worker thread, as
    storage.writer.AsyncStorage does (so a test sees the same awaits)."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._storage, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: method(*args, **kwargs)
            )

        return call


def make_storage(tmp_path) -> Any:  # type: ignore[no-untyped-def]
    """The real SQLite storage when this branch has it, else MemoryStorage."""
    try:
        from workspace_manager.storage.sqlite import SqliteStorage
    except ImportError:
        return MemoryStorage()
    return SqliteStorage(tmp_path / "runs.db", create=True)

"""The daemon's logic (daemon/service.py, daemon/loops.py) with a fake clock and fake
locations, on a real SQLite run database: catch-up, run_key dedupe and the cursor across a
daemon restart, a slow sensor that delays nothing else, run status sensors, statuses."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional

import pytest

from workspace_manager.daemon.instigators import resolve_status
from workspace_manager.daemon.service import Daemon
from workspace_manager.protocol.errors import RemoteError
from workspace_manager.storage.records import (
    FAILURE,
    SCHEDULE,
    SENSOR,
    SUCCESS,
    InstigatorState,
    RunRecord,
)
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.storage.writer import AsyncStorage
from workspace_manager.supervisor.state import State
from workspace_manager.workspace.model import DaemonConfig, Workspace


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class FakeClock:
    """Wall time that moves only when the test says; sleepers wake in order."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._sleepers: list = []
        self._ids = itertools.count()

    def time(self) -> float:
        return self.now

    async def sleep_until(self, when: float) -> None:
        if when <= self.now:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._ids), fut))
        await fut

    def set(self, now: float) -> None:
        """Move to `now`, waking every sleeper due by then."""
        self.now = now
        while self._sleepers and self._sleepers[0][0] <= now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def advance(self, seconds: float) -> None:
        self.set(self.now + seconds)

    async def sleeping(self, n: int) -> None:
        """Wait until `n` tasks sleep on this clock (the daemon's tasks have settled)."""
        await eventually(lambda: _true(len(self._sleepers) >= n))


Handler = Callable[[Dict[str, Any]], Awaitable[Any]]


@dataclass
class FakeLocation:
    """A ready location: its snapshot and answers to the daemon's calls."""

    name: str
    schedules: List[dict] = field(default_factory=list)
    sensors: List[dict] = field(default_factory=list)
    handlers: Dict[str, Handler] = field(default_factory=dict)  # by schedule/sensor name
    calls: List[tuple] = field(default_factory=list)
    state: State = State.READY

    def __post_init__(self) -> None:
        self.snapshot = self.make_snapshot()

    def make_snapshot(self) -> dict:
        return {
            "location": self.name,
            "repositories": [
                {
                    "name": "repo",
                    "jobs": [{"name": "job", "tags": {"team": "a"}}, {"name": "other", "tags": {}}],
                    "schedules": self.schedules,
                    "sensors": self.sensors,
                }
            ],
        }

    async def call(self, method: str, params: Optional[dict] = None, timeout: Any = None) -> Any:
        params = params or {}
        name = params.get("schedule") or params.get("sensor")
        self.calls.append((method, name, dict(params)))
        return await self.handlers[name](params)


def schedule(name: str, cron: str, tz: Optional[str] = None, default: Optional[str] = "RUNNING"):
    return {
        "name": name,
        "job_name": "job",
        "cron_schedule": cron,
        "execution_timezone": tz,
        "default_status": default,
    }


def sensor(name: str, interval: float = 30, default: Optional[str] = "RUNNING", **kw: Any):
    return {
        "name": name,
        "job_name": "job",
        "minimum_interval_seconds": interval,
        "default_status": default,
        "sensor_type": "standard",
        **kw,
    }


def answer(result: Any) -> Handler:
    async def handler(params: Dict[str, Any]) -> Any:
        return result(params) if callable(result) else result

    return handler


class Events:
    def __init__(self) -> None:
        self.ticks: list = []
        self.runs: list = []
        self.messages: list = []

    def tick(self, tick: Any) -> None:
        self.ticks.append(tick)

    def run(self, record: Any, event: str) -> None:
        self.runs.append((record, event))

    def message(self, text: str) -> None:
        self.messages.append(text)


class FakeRuns:
    def __init__(self) -> None:
        self.woken = 0
        self.listeners: list = []

    def wake(self) -> None:
        self.woken += 1

    def add_finished_listener(self, callback: Any) -> None:
        self.listeners.append(callback)

    def finished(self, record: RunRecord) -> None:
        for callback in self.listeners:
            callback(record)


class Harness:
    """A daemon over one database file; `restart()` makes a new daemon on the same file."""

    def __init__(self, path: Path, locations: List[FakeLocation], clock: FakeClock, **kw: Any):
        self.path = path
        self.locations = {loc.name: loc for loc in locations}
        self.clock = clock
        self.workspace = Workspace(path=None, root=path.parent, locations=(), **kw)
        self.kw = kw
        self.daemon: Optional[Daemon] = None
        self.events = Events()
        self.runs = FakeRuns()
        self.store: Optional[AsyncStorage] = None

    async def start(self, **daemon_kw: Any) -> Daemon:
        self.store = AsyncStorage(SqliteStorage(self.path))
        self.daemon = Daemon(
            store=self.store,
            locations=lambda: self.locations,
            workspace=lambda: self.workspace,
            events=self.events,
            runs=self.runs,
            clock=self.clock,  # type: ignore[arg-type]
            **daemon_kw,
        )
        await self.daemon.start()
        return self.daemon

    async def stop(self) -> None:
        assert self.daemon is not None and self.store is not None
        await self.daemon.stop()
        await self.store.close()

    async def restart(self, **daemon_kw: Any) -> Daemon:
        await self.stop()
        return await self.start(**daemon_kw)

    async def ticks(self, name: str, kind: str, location: str = "loc") -> list:
        assert self.store is not None
        return list(reversed(await self.store.list_ticks(location, name, kind, 1000)))

    async def runs_of(self) -> List[RunRecord]:
        assert self.store is not None
        return list(reversed(await self.store.list_runs(limit=None)))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def quiet(seconds: float = 0.2) -> None:
    """Let the daemon's tasks run (real time: the storage answers from threads)."""
    await asyncio.sleep(seconds)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


# -- schedules ---------------------------------------------------------------------------------


def test_a_new_schedule_fires_from_now_on_never_for_the_past(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(at("2025-06-01T10:30:00+00:00"))
        loc = FakeLocation("loc", schedules=[schedule("hourly", "0 * * * *")])
        loc.handlers["hourly"] = answer({"run_requests": [{"run_config": {"x": 1}}]})
        h = Harness(tmp_path / "runs.db", [loc], clock)
        await h.start()
        await clock.sleeping(1)
        assert await h.ticks("hourly", SCHEDULE) == []  # 10:00 was before it was seen
        clock.set(at("2025-06-01T11:00:00+00:00"))
        await eventually(lambda: _count(h.ticks("hourly", SCHEDULE), 1))
        tick = (await h.ticks("hourly", SCHEDULE))[0]
        assert tick.tick_time == at("2025-06-01T11:00:00+00:00")
        assert tick.status == "success" and len(tick.run_ids) == 1
        (queued,) = await h.runs_of()
        assert queued.status == "QUEUED" and queued.job == "job" and queued.run_config == {"x": 1}
        assert queued.origin == {
            "kind": "schedule",
            "name": "hourly",
            "scheduled_time": tick.tick_time,
            "tick_id": tick.tick_id,
        }
        assert queued.tags == {"team": "a"}  # the job's own tags
        assert loc.calls[0][2]["scheduled_time"] == tick.tick_time
        assert h.runs.woken >= 1
        assert [e for _, e in h.events.runs] == ["queued"]
        assert [t.tick_id for t in h.events.ticks] == [tick.tick_id]
        await h.stop()

    run(main())


@pytest.mark.parametrize("max_catchup_runs,expected_hours", [(1, [15]), (3, [13, 14, 15])])
def test_catch_up_after_downtime_obeys_max_catchup_runs(
    tmp_path: Path, max_catchup_runs: int, expected_hours: List[int]
) -> None:
    async def main() -> None:
        clock = FakeClock(at("2025-06-01T09:59:00+00:00"))
        loc = FakeLocation("loc", schedules=[schedule("hourly", "0 * * * *")])
        loc.handlers["hourly"] = answer({"run_requests": [{}]})
        h = Harness(tmp_path / "runs.db", [loc], clock)
        await h.start(max_catchup_runs=max_catchup_runs)
        await clock.sleeping(1)
        clock.set(at("2025-06-01T10:00:00+00:00"))
        await eventually(lambda: _count(h.ticks("hourly", SCHEDULE), 1))
        await h.stop()
        # down from 10:00 to 15:30: 11:00 .. 15:00 were missed
        clock.set(at("2025-06-01T15:30:00+00:00"))
        await h.start(max_catchup_runs=max_catchup_runs)
        n = 1 + len(expected_hours)
        await eventually(lambda: _count(h.ticks("hourly", SCHEDULE), n))
        await quiet()
        ticks = await h.ticks("hourly", SCHEDULE)
        assert [datetime.utcfromtimestamp(t.tick_time).hour for t in ticks] == [10] + expected_hours
        assert len(await h.runs_of()) == n
        # then on time again
        clock.set(at("2025-06-01T16:00:00+00:00"))
        await eventually(lambda: _count(h.ticks("hourly", SCHEDULE), n + 1))
        await h.stop()

    run(main())


def test_schedule_in_a_time_zone_across_spring_forward(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(at("2025-03-30T01:00:00+01:00"))
        loc = FakeLocation("loc", schedules=[schedule("s", "30 2 * * *", "Europe/Berlin")])
        loc.handlers["s"] = answer({"run_requests": [], "skip_reason": "nothing today"})
        h = Harness(tmp_path / "runs.db", [loc], clock)
        daemon = await h.start()
        await clock.sleeping(1)
        (desc,) = daemon.instigators(SCHEDULE)
        assert desc["next_tick"] == at("2025-03-30T03:00:00+02:00")  # 02:30 does not exist
        clock.set(at("2025-03-30T03:00:00+02:00"))
        await eventually(lambda: _count(h.ticks("s", SCHEDULE), 1))
        (tick,) = await h.ticks("s", SCHEDULE)
        assert tick.status == "skipped" and tick.skip_reason == "nothing today"
        assert tick.tick_time == at("2025-03-30T03:00:00+02:00")
        await h.stop()

    run(main())


def test_a_failing_schedule_records_the_error_and_goes_on(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(at("2025-06-01T10:59:00+00:00"))
        loc = FakeLocation("loc", schedules=[schedule("s", "0 * * * *")])

        async def boom(params: dict) -> Any:
            raise RemoteError("UserCodeError", "ValueError: no", "Traceback ...\nValueError: no")

        loc.handlers["s"] = boom
        h = Harness(tmp_path / "runs.db", [loc], clock)
        await h.start()
        await clock.sleeping(1)
        clock.set(at("2025-06-01T11:00:00+00:00"))
        await eventually(lambda: _count(h.ticks("s", SCHEDULE), 1))
        (tick,) = await h.ticks("s", SCHEDULE)
        assert tick.status == "failure"
        assert tick.error.startswith("ValueError: no\nTraceback")
        loc.handlers["s"] = answer({"run_requests": [{}]})
        clock.set(at("2025-06-01T12:00:00+00:00"))
        await eventually(lambda: _count(h.ticks("s", SCHEDULE), 2))
        assert (await h.ticks("s", SCHEDULE))[1].status == "success"
        await h.stop()

    run(main())


@pytest.mark.parametrize(
    "bad",
    [
        {"run_config": {"x": float("nan")}},
        {"run_config": {"x": [float("inf")]}},
        {"tags": {"k": 1}},
        {"tags": {"wsm/timeout_seconds": "nan"}},
    ],
)
def test_a_schedule_request_that_is_not_plain_json_fails_its_whole_tick(
    tmp_path: Path, bad: dict
) -> None:
    """A tick's requests are one decision: one bad request fails the tick, with one line
    naming it, and none of its requests is queued (docs/daemon.md)."""

    async def main() -> None:
        clock = FakeClock(at("2025-06-01T10:59:00+00:00"))
        loc = FakeLocation("loc", schedules=[schedule("s", "0 * * * *")])
        loc.handlers["s"] = answer({"run_requests": [{"run_config": {"x": 1}}, bad]})
        h = Harness(tmp_path / "runs.db", [loc], clock)
        await h.start()
        await clock.sleeping(1)
        clock.set(at("2025-06-01T11:00:00+00:00"))
        await eventually(lambda: _count(h.ticks("s", SCHEDULE), 1))
        (tick,) = await h.ticks("s", SCHEDULE)
        assert tick.status == "failure" and tick.run_ids == []
        assert tick.error.startswith("run request 2 of 2: ") and "\n" not in tick.error
        assert await h.runs_of() == []
        await h.stop()

    run(main())


# -- sensors -----------------------------------------------------------------------------------


def test_sensor_cursor_and_run_key_dedupe_survive_a_daemon_restart(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(1_000_000.0)
        loc = FakeLocation("loc", sensors=[sensor("files", interval=30)])

        def files(params: dict) -> dict:
            n = int(params["cursor"] or 0)
            # asks again for every file it ever saw; only new keys may launch
            keys = [f"file-{i}" for i in range(n + 2)]
            return {
                "run_requests": [{"run_key": k, "run_config": {}} for k in keys],
                "cursor": str(n + 1),
                "skip_reason": None,
            }

        loc.handlers["files"] = answer(files)
        h = Harness(tmp_path / "runs.db", [loc], clock)
        await h.start()
        await eventually(lambda: _count(h.ticks("files", SENSOR), 1))  # at once: never ran
        assert {r.run_key for r in await h.runs_of()} == {"file-0", "file-1"}
        await h.restart()
        await quiet()
        assert len(await h.ticks("files", SENSOR)) == 1  # its interval is not over
        clock.advance(30)
        await eventually(lambda: _count(h.ticks("files", SENSOR), 2))
        ticks = await h.ticks("files", SENSOR)
        assert loc.calls[-1][2]["cursor"] == "1"  # the cursor the first daemon left
        assert loc.calls[-1][2]["last_run_key"] == "file-1"
        assert ticks[1].run_keys_skipped == ["file-0", "file-1"]
        assert ticks[1].status == "success"  # file-2 launched: a tick with a run
        assert ticks[1].cursor == "2"
        runs = await h.runs_of()
        assert sorted(r.run_key for r in runs) == ["file-0", "file-1", "file-2"]
        assert all(r.origin["kind"] == "sensor" and r.origin["tick_id"] for r in runs)
        await h.restart()
        clock.advance(30)
        await eventually(lambda: _count(h.ticks("files", SENSOR), 3))
        assert sorted(r.run_key for r in await h.runs_of()) == [f"file-{i}" for i in range(4)]
        await h.stop()

    run(main())


def test_a_slow_sensor_delays_no_other_sensor_or_schedule(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(at("2025-06-01T10:00:30+00:00"))
        loc = FakeLocation(
            "loc",
            sensors=[sensor("slow", interval=1), sensor("quick", interval=1)],
            schedules=[schedule("minutely", "* * * * *")],
        )
        other = FakeLocation("other", sensors=[sensor("there", interval=1)])
        release = asyncio.Event()

        async def slow(params: dict) -> Any:
            await release.wait()  # as a sensor sleeping 20 s in its thread
            return {"run_requests": [], "skip_reason": "slept"}

        loc.handlers["slow"] = slow
        loc.handlers["quick"] = answer({"run_requests": [], "skip_reason": "nothing"})
        loc.handlers["minutely"] = answer({"run_requests": []})
        other.handlers["there"] = answer({"run_requests": [], "skip_reason": "nothing"})
        h = Harness(tmp_path / "runs.db", [loc, other], clock)
        await h.start()
        for second in range(1, 61):
            await clock.sleeping(3)  # quick, there and the schedule wait for their time
            clock.advance(1)
            await eventually(lambda n=second: _count(h.ticks("quick", SENSOR), n + 1))
            await eventually(lambda n=second: _count(h.ticks("there", SENSOR, "other"), n + 1))
        await eventually(lambda: _count(h.ticks("minutely", SCHEDULE), 1))
        assert await h.ticks("slow", SENSOR) == []  # still in its first evaluation
        release.set()
        await eventually(lambda: _count(h.ticks("slow", SENSOR), 1))
        await h.stop()

    run(main())


def test_a_failing_sensor_is_tried_again_at_its_next_interval(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(1_000_000.0)
        loc = FakeLocation("loc", sensors=[sensor("s", interval=10)])
        calls = itertools.count()

        async def flaky(params: dict) -> Any:
            if next(calls) == 0:
                raise RemoteError("UserCodeError", "RuntimeError: down")
            return {"run_requests": [{"run_key": "a"}], "cursor": "c1"}

        loc.handlers["s"] = flaky
        h = Harness(tmp_path / "runs.db", [loc], clock)
        await h.start()
        await eventually(lambda: _count(h.ticks("s", SENSOR), 1))
        (first,) = await h.ticks("s", SENSOR)
        assert first.status == "failure" and "RuntimeError: down" in first.error
        clock.advance(10)
        await eventually(lambda: _count(h.ticks("s", SENSOR), 2))
        assert (await h.ticks("s", SENSOR))[1].status == "success"
        assert loc.calls[1][2]["cursor"] is None  # a failure keeps the cursor
        await h.stop()

    run(main())


# -- run status sensors ------------------------------------------------------------------------


def test_run_status_sensor_gets_each_finished_run_once_across_restarts(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(1_000_000.0)
        loc = FakeLocation(
            "loc",
            sensors=[
                sensor("on_failure", interval=30, sensor_type="run_status", run_status=FAILURE)
            ],
        )
        seen: List[str] = []

        def deliver(params: dict) -> dict:
            ids = [r["run_id"] for r in params["runs"]]
            seen.extend(ids)
            return {
                "run_requests": [{"run_key": f"alert-{i}", "job_name": "other"} for i in ids],
                "skip_reason": None,
                "results": [{"run_id": i, "delivered": True} for i in ids],
            }

        loc.handlers["on_failure"] = answer(deliver)
        h = Harness(tmp_path / "runs.db", [loc], clock)
        store = AsyncStorage(SqliteStorage(h.path))

        async def finish(run_id: str, status: str, location: str = "loc") -> None:
            await store.add_run(RunRecord(run_id=run_id, location=location, job="job"))
            record = await store.update_run(run_id, status=status)
            h.runs.finished(record)

        await finish("before", FAILURE)  # finished before the sensor existed: not given
        await h.start()
        await quiet()
        await finish("ok-1", SUCCESS)
        await finish("bad-1", FAILURE)
        await finish("bad-elsewhere", FAILURE, location="far")
        await eventually(lambda: _true(seen == ["bad-1"]))
        await h.restart()
        await finish("bad-2", FAILURE)
        await eventually(lambda: _true(seen == ["bad-1", "bad-2"]))
        await quiet()
        await h.restart()
        await quiet()
        assert seen == ["bad-1", "bad-2"]
        alerts = sorted(r.run_key for r in await h.runs_of() if r.job == "other")
        assert alerts == ["alert-bad-1", "alert-bad-2"]
        await h.stop()
        await store.close()

    run(main())


def test_a_run_status_sensor_that_requests_nothing_says_which_runs_it_handled(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        clock = FakeClock(1_000_000.0)
        loc = FakeLocation(
            "loc",
            sensors=[sensor("pager", interval=30, sensor_type="run_status", run_status=FAILURE)],
        )

        def page(params: dict) -> dict:  # pages someone, asks for no run
            ids = [r["run_id"] for r in params["runs"]]
            return {
                "run_requests": [],
                "skip_reason": None,
                "results": [{"run_id": i, "delivered": True} for i in ids],
            }

        loc.handlers["pager"] = answer(page)
        h = Harness(tmp_path / "runs.db", [loc], clock)
        store = AsyncStorage(SqliteStorage(h.path))
        await h.start()
        await quiet()
        run_id = "0f3c12ab" + "0" * 24
        await store.add_run(RunRecord(run_id=run_id, location="loc", job="etl"))
        h.runs.finished(await store.update_run(run_id, status=FAILURE))
        await eventually(lambda: _count(h.ticks("pager", SENSOR), 1))
        (tick,) = await h.ticks("pager", SENSOR)
        assert (tick.status, tick.skip_reason) == (
            "skipped",
            "handled run 0f3c12ab (FAILURE of job etl)",
        )
        await h.stop()
        await store.close()

    run(main())


# -- running or stopped ------------------------------------------------------------------------


def test_status_comes_from_the_user_then_the_code_then_the_workspace() -> None:
    assert resolve_status(None, None, None) == ("STOPPED", "default")
    assert resolve_status(None, None, "running") == ("RUNNING", "workspace")
    assert resolve_status(None, "STOPPED", "RUNNING") == ("STOPPED", "code")
    assert resolve_status(None, "RUNNING", None) == ("RUNNING", "code")
    assert resolve_status("STOPPED", "RUNNING", "RUNNING") == ("STOPPED", "user")


def test_default_status_and_start_stop_kept_across_restarts(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(1_000_000.0)
        loc = FakeLocation(
            "loc",
            sensors=[
                sensor("by_code", interval=5),
                sensor("unset", interval=5, default=None),
                sensor("off", interval=5, default="STOPPED"),
            ],
        )
        for name in ("by_code", "unset", "off"):
            loc.handlers[name] = answer({"run_requests": []})
        h = Harness(tmp_path / "runs.db", [loc], clock)
        daemon = await h.start()
        status = {d["name"]: (d["status"], d["status_source"]) for d in daemon.instigators()}
        assert status == {
            "by_code": ("RUNNING", "code"),
            "unset": ("STOPPED", "default"),
            "off": ("STOPPED", "code"),
        }
        await eventually(lambda: _count(h.ticks("by_code", SENSOR), 1))
        assert await h.ticks("unset", SENSOR) == []
        # the workspace's default applies to code that sets none
        h.workspace = Workspace(
            path=None, root=tmp_path, locations=(), daemon=DaemonConfig(default_status="RUNNING")
        )
        await daemon.sync()
        await eventually(lambda: _count(h.ticks("unset", SENSOR), 1))
        assert await h.ticks("off", SENSOR) == []
        # the user's choice wins, and is kept
        answer_ = await daemon.set_status(SENSOR, "loc:off", "running")
        assert (answer_["status"], answer_["status_source"]) == ("RUNNING", "user")
        await daemon.set_status(SENSOR, "by_code", "STOPPED")
        await eventually(lambda: _count(h.ticks("off", SENSOR), 1))
        daemon = await h.restart()
        status = {d["name"]: (d["status"], d["status_source"]) for d in daemon.instigators()}
        assert status["off"] == ("RUNNING", "user") and status["by_code"] == ("STOPPED", "user")
        before = len(await h.ticks("by_code", SENSOR))
        clock.advance(5)
        await eventually(lambda: _count(h.ticks("off", SENSOR), 2))
        assert len(await h.ticks("by_code", SENSOR)) == before
        with pytest.raises(LookupError, match="no sensor named 'nope'"):
            await daemon.set_status(SENSOR, "nope", "RUNNING")
        with pytest.raises(ValueError):
            await daemon.set_status(SENSOR, "off", "PAUSED")
        await h.stop()

    run(main())


def test_ambiguous_names_need_the_location(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(1_000_000.0)
        a = FakeLocation("a", schedules=[schedule("daily", "0 0 * * *", default=None)])
        b = FakeLocation("b", schedules=[schedule("daily", "0 0 * * *", default=None)])
        h = Harness(tmp_path / "runs.db", [a, b], clock)
        daemon = await h.start()
        with pytest.raises(LookupError, match="use LOCATION:NAME"):
            await daemon.set_status(SCHEDULE, "daily", "RUNNING")
        desc = await daemon.set_status(SCHEDULE, "b:daily", "RUNNING")
        assert desc["location"] == "b" and desc["next_tick"] == 1_036_800.0
        await h.stop()

    run(main())


def test_tasks_follow_the_location(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(1_000_000.0)
        loc = FakeLocation("loc", sensors=[sensor("s", interval=5)])
        loc.handlers["s"] = answer({"run_requests": []})
        h = Harness(tmp_path / "runs.db", [loc], clock)
        daemon = await h.start()
        await eventually(lambda: _count(h.ticks("s", SENSOR), 1))
        loc.state = State.BACKOFF  # not serving: no task, no tick
        await daemon.sync()
        assert daemon.instigators()[0]["serving"] is False
        clock.advance(10)
        await quiet()
        assert len(await h.ticks("s", SENSOR)) == 1
        loc.state = State.READY  # a new process: a new snapshot, with a new sensor
        loc.sensors = [sensor("s", interval=5), sensor("t", interval=5)]
        loc.handlers["t"] = answer({"run_requests": []})
        loc.snapshot = loc.make_snapshot()
        await daemon.sync()
        await eventually(lambda: _count(h.ticks("s", SENSOR), 2))
        await eventually(lambda: _count(h.ticks("t", SENSOR), 1))
        del h.locations["loc"]  # removed from the workspace
        await daemon.sync()
        assert daemon.instigators() == []
        await h.stop()

    run(main())


async def _count(ticks: Awaitable[list], n: int) -> bool:
    return len(await ticks) >= n


async def _true(value: bool) -> bool:
    return value


def test_state_record_round_trip_sanity() -> None:
    state = InstigatorState("loc", "s", SENSOR)
    assert state.status is None and state.cursor is None


def test_a_task_that_hits_trouble_says_so_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from workspace_manager.daemon import loops
    from workspace_manager.daemon.instigators import Instigator

    monkeypatch.setattr(loops, "TROUBLE_RETRY", 0.01)
    said: List[str] = []
    attempts = itertools.count()

    class Host:
        def message(self, text: str) -> None:
            said.append(text)

    async def loop() -> None:
        if next(attempts) < 2:
            raise OSError("disk full")

    inst = Instigator("loc", "repo", SENSOR, "s")
    asyncio.run(loops.guarded(Host(), inst, loop))  # type: ignore[arg-type]
    assert said == [
        "sensor loc:s: OSError('disk full'); trying again in 0.01 s",
        "sensor loc:s: OSError('disk full'); trying again in 0.02 s",
    ]

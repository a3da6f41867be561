"""runs/coordinator.py with real run processes and a real SQLite storage, without a manager:
records, logs, cancel of a whole tree, a killed or crashed run, timeouts, retries, queue
limits, recovery and drain."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, List, Optional

import psutil
import pytest

from workspace_manager.loader.launch import make_sdk_dir
from workspace_manager.runs.coordinator import KILLED_REASON, RunCoordinator, RunHooks
from workspace_manager.runs.process import RunPlan
from workspace_manager.storage.records import (
    CANCELED,
    FAILURE,
    QUEUED,
    STARTED,
    SUCCESS,
    RunRecord,
)
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.storage.writer import AsyncStorage
from workspace_manager.supervisor.plan import SCRUBBED_VARS
from workspace_manager.workspace.model import (
    CodeTarget,
    DaemonConfig,
    LocationConfig,
    Supervision,
    Workspace,
)

REPO = """
import ctypes, os, signal, subprocess, sys, time
from workspace_manager import job, repository

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imported"), "a") as f:
    f.write(str(os.getpid()) + "\\n")

@job
def hello(context):
    print("printed line", flush=True)
    context.log.info("hello from %s", context.job_name)
    context.log.warning("config %s tags %s", context.run_config, sorted(context.tags))
    print("an error line", file=sys.stderr, flush=True)
    return {"ok": True, "pid": os.getpid(), "python": sys.executable}

@job
def boom():
    def inner():
        raise ValueError("the job broke")
    inner()

@job
def stubborn(context):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    with open(context.run_config["pidfile"], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(600)

@job
def sleeper(context):
    with open(context.run_config["pidfile"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(float(context.run_config.get("seconds", 600)))

@job
def segfault():
    ctypes.string_at(0)

@job
def flaky(context):
    context.log.info("attempt %s", context.run_id)
    raise RuntimeError("flaky")

@job
def long_line():
    print("x" * 100000 + "é" * 50000 + "end", flush=True)
    print("after", flush=True)

@job
def interleaved(context):
    for i in range(50):
        print(f"print {i}")
        context.log.info(f"log {i}")
        sys.stderr.write(f"err {i}\\n")
    sys.stdout.write("no newline at the end")

@repository
def repo():
    return [hello, boom, stubborn, sleeper, segfault, flaky, long_line, interleaved]
"""


class Harness:
    def __init__(
        self, tmp: Path, daemon: Optional[DaemonConfig] = None, python: str = sys.executable
    ):
        self.tmp = tmp
        (tmp / "code").mkdir(exist_ok=True)
        (tmp / "code" / "runs_repo.py").write_text(textwrap.dedent(REPO))
        self.storage = SqliteStorage(tmp / "runs.db")
        self.store: Any = None  # AsyncStorage, made on the test's loop
        target = CodeTarget("python_file", tmp / "code", python_file=tmp / "code" / "runs_repo.py")
        self.workspace = Workspace(
            None,
            tmp,
            (LocationConfig("loc", target, Supervision()),),
            daemon=daemon or DaemonConfig(),
        )
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_VARS}
        env["PYTHONUNBUFFERED"] = "1"
        self.plan = RunPlan(
            python=python,
            cwd=str(tmp / "code"),
            env=env,
            sdk_dir=make_sdk_dir(str(tmp / "rt")),
            target={
                "kind": "python_file",
                "python_file": str(tmp / "code" / "runs_repo.py"),
                "module_name": None,
                "attribute": None,
                "working_directory": str(tmp / "code"),
            },
        )
        self.ready = True
        self.events: List[tuple] = []
        self.finished: List[RunRecord] = []

    def coordinator(self, **kwargs: Any) -> RunCoordinator:
        self.store = AsyncStorage(self.storage)

        async def plan(name: str) -> RunPlan:
            return self.plan

        snapshot = {
            "repositories": [
                {
                    "name": "repo",
                    "jobs": [
                        {"name": n, "tags": {}}
                        for n in (
                            "hello",
                            "boom",
                            "stubborn",
                            "sleeper",
                            "segfault",
                            "flaky",
                            "long_line",
                            "interleaved",
                        )
                    ],
                }
            ]
        }
        c = RunCoordinator(
            self.store,
            RunHooks(
                workspace=lambda: self.workspace,
                location_ready=lambda name: self.ready,
                snapshot=lambda name: snapshot,
                plan=plan,
                report=lambda record, event: self.events.append((record.run_id, event)),
            ),
            **kwargs,
        )
        c.add_finished_listener(self.finished.append)
        return c

    async def until_final(self, run_id: str, timeout: float = 30.0) -> RunRecord:
        deadline = time.monotonic() + timeout
        while True:
            record = self.storage.get_run(run_id)
            if record.is_final:
                return record
            assert time.monotonic() < deadline, f"run still {record.status}"
            await asyncio.sleep(0.02)

    async def pids(self, name: str, count: int, timeout: float = 20.0) -> List[int]:
        path = self.tmp / name
        deadline = time.monotonic() + timeout
        while True:
            if path.exists():
                text = path.read_text().split()
                if len(text) == count:
                    return [int(p) for p in text]
            assert time.monotonic() < deadline, "the job did not write its pids"
            await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def test_success_records_log_lines_prints_and_times(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> RunRecord:
        c = h.coordinator()
        await c.start()
        run = await c.submit(
            "loc", "hello", run_config={"x": 1}, tags={"team": "a"}, origin={"kind": "manual"}
        )
        assert run.status == QUEUED and len(run.run_id) == 32
        record = await h.until_final(run.run_id)
        await c.shutdown(0)
        return record

    before = time.time()
    record = run_async(go())
    assert record.status == SUCCESS, record
    assert record.started_at and record.start_time and record.ended_at and record.pid
    assert before <= record.start_time <= record.started_at <= record.ended_at
    assert record.exit_code == 0 and record.error is None
    lines = h.storage.read_logs(record.run_id)
    text = [(line.stream, line.level, line.text) for line in lines]
    assert ("stdout", None, "printed line") in text
    assert ("stderr", None, "an error line") in text
    assert ("log", "INFO", "hello from hello") in text
    assert ("log", "WARNING", "config {'x': 1} tags ['team']") in text
    assert all(before <= line.time <= record.ended_at + 1 for line in lines)
    statuses = [e.status for e in h.storage.run_events(record.run_id)]
    assert statuses == ["QUEUED", "STARTING", "STARTED", "SUCCESS"]
    events = [e for rid, e in h.events if rid == record.run_id]
    assert events == ["queued", "starting", "started", "success"]
    assert [r.run_id for r in h.finished] == [record.run_id]


def test_a_run_is_a_fresh_process_of_the_plans_interpreter(tmp_path: Path) -> None:
    h = Harness(tmp_path, python="/usr/bin/python3")

    async def go() -> RunRecord:
        c = h.coordinator()
        await c.start()
        run = await c.submit("loc", "hello", origin={"kind": "manual"})
        record = await h.until_final(run.run_id)
        await c.shutdown(0)
        return record

    record = run_async(go())
    assert record.status == SUCCESS, record
    assert record.pid != os.getpid()


def test_failure_keeps_the_traceback(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> RunRecord:
        c = h.coordinator()
        await c.start()
        run = await c.submit("loc", "boom", origin={"kind": "manual"})
        record = await h.until_final(run.run_id)
        await c.shutdown(0)
        return record

    record = run_async(go())
    assert record.status == FAILURE
    assert record.error == "ValueError: the job broke"
    assert record.exit_code == 1
    assert "Traceback" in record.traceback and "in inner" in record.traceback
    assert 'raise ValueError("the job broke")' in record.traceback
    assert "workspace_manager" not in record.traceback  # the user's frames only


def test_unknown_job_and_location_are_one_line_errors(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> None:
        c = h.coordinator()
        await c.start()
        with pytest.raises(LookupError, match="no job named 'nope' in location 'loc'"):
            await c.submit("loc", "nope")
        with pytest.raises(LookupError, match="no location named 'elsewhere'"):
            await c.submit("elsewhere", "hello")
        with pytest.raises(ValueError, match="wsm/priority must be an integer"):
            await c.submit("loc", "hello", tags={"wsm/priority": "high"})
        await c.shutdown(0)

    run_async(go())


def test_cancel_kills_a_tree_that_ignores_sigterm(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> tuple:
        c = h.coordinator(cancel_grace=1.0)
        await c.start()
        run = await c.submit("loc", "stubborn", run_config={"pidfile": str(tmp_path / "p")})
        pids = await h.pids("p", 2)
        while h.storage.get_run(run.run_id).status != STARTED:
            await asyncio.sleep(0.02)
        canceling = await c.cancel(run.run_id[:8])
        assert canceling.status == "CANCELING"
        record = await h.until_final(run.run_id)
        await c.shutdown(0)
        return record, pids

    record, pids = run_async(go())
    assert record.status == CANCELED
    assert record.error == "canceled by user"
    assert record.signal == signal.SIGKILL
    assert not [p for p in pids if alive(p)]
    texts = [line.text for line in h.storage.read_logs(record.run_id)]
    assert "canceling: canceled by user" in texts
    assert any("killing its processes" in t for t in texts)


def test_kill_9_of_a_run_is_a_failure_naming_the_signal_at_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> tuple:
        c = h.coordinator()
        await c.start()
        run = await c.submit("loc", "sleeper", run_config={"pidfile": str(tmp_path / "p")})
        (pid,) = await h.pids("p", 1)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        record = await h.until_final(run.run_id, timeout=10)
        took = time.monotonic() - killed
        await c.shutdown(0)
        return record, took

    record, took = run_async(go())
    assert record.status == FAILURE
    assert record.signal == signal.SIGKILL
    assert "killed by SIGKILL" in record.error
    assert took < 5  # "eventually", generous; the bench measures it


def test_a_segfault_is_a_failure_naming_sigsegv(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> RunRecord:
        c = h.coordinator()
        await c.start()
        run = await c.submit("loc", "segfault")
        record = await h.until_final(run.run_id)
        await c.shutdown(0)
        return record

    record = run_async(go())
    assert record.status == FAILURE
    assert record.signal == signal.SIGSEGV
    assert "killed by SIGSEGV" in record.error


def test_timeout_cancels_with_the_reason(tmp_path: Path) -> None:
    h = Harness(tmp_path, DaemonConfig(run_timeout_seconds=30))

    async def go() -> RunRecord:
        c = h.coordinator(cancel_grace=2.0)
        await c.start()
        run = await c.submit(
            "loc",
            "sleeper",
            run_config={"pidfile": str(tmp_path / "p")},
            tags={"wsm/timeout_seconds": "0.5"},
        )
        record = await h.until_final(run.run_id)
        await c.shutdown(0)
        return record

    record = run_async(go())
    assert record.status == CANCELED
    assert record.error == "timed out after 0.5 s"


def test_retries_make_new_runs_naming_their_parent(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> List[RunRecord]:
        c = h.coordinator()
        await c.start()
        run = await c.submit("loc", "flaky", tags={"wsm/max_retries": "2"})
        deadline = time.monotonic() + 60
        while True:
            runs = h.storage.list_runs(job="flaky", limit=None)
            if len(runs) == 3 and all(r.is_final for r in runs):
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # no fourth
        await c.shutdown(0)
        assert run.attempt == 0
        return h.storage.list_runs(job="flaky", limit=None)

    runs = sorted(run_async(go()), key=lambda r: r.attempt)
    assert [r.attempt for r in runs] == [0, 1, 2]
    assert [r.status for r in runs] == [FAILURE] * 3
    assert runs[1].parent_run_id == runs[0].run_id and runs[2].parent_run_id == runs[1].run_id
    assert runs[2].origin == {"kind": "retry", "parent_run_id": runs[1].run_id, "attempt": 2}


def test_one_at_a_time_in_priority_order(tmp_path: Path) -> None:
    h = Harness(tmp_path, DaemonConfig(max_concurrent_runs=1))
    h.ready = False  # everything queues first

    async def go() -> List[RunRecord]:
        c = h.coordinator(poll_seconds=0.05)
        await c.start()
        low = await c.submit("loc", "hello")
        high = await c.submit("loc", "hello", tags={"wsm/priority": "10"})
        mid = await c.submit("loc", "hello", tags={"wsm/priority": "1"})
        await asyncio.sleep(0.2)
        assert c.queue_length() == 3 and c.in_progress() == 0
        h.ready = True
        c.wake()
        records = [await h.until_final(r.run_id) for r in (low, high, mid)]
        await c.shutdown(0)
        return records

    low, high, mid = run_async(go())
    assert all(r.status == SUCCESS for r in (low, high, mid))
    # never two at once, and in priority order
    assert high.ended_at <= mid.start_time and mid.ended_at <= low.start_time


def test_recovery_marks_runs_of_a_killed_manager_failed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.storage.add_run(RunRecord("a" * 32, "loc", "hello", created_at=time.time()))
    h.storage.update_run("a" * 32, status=STARTED, pid=999999)
    queued = h.storage.add_run(RunRecord("b" * 32, "loc", "hello", created_at=time.time()))

    async def go() -> tuple:
        c = h.coordinator()
        await c.start()
        done = await h.until_final(queued.run_id)
        await c.shutdown(0)
        return h.storage.get_run("a" * 32), done

    dead, done = run_async(go())
    assert dead.status == FAILURE and dead.error == KILLED_REASON
    assert done.status == SUCCESS  # queued runs are launched


def test_shutdown_drains_then_cancels(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> tuple:
        c = h.coordinator(cancel_grace=2.0)
        await c.start()
        short = await c.submit(
            "loc", "sleeper", run_config={"pidfile": str(tmp_path / "s"), "seconds": 0.5}
        )
        long = await c.submit("loc", "sleeper", run_config={"pidfile": str(tmp_path / "l")})
        await h.pids("s", 1)
        await h.pids("l", 1)
        started = time.monotonic()
        await c.shutdown(2.0)
        took = time.monotonic() - started
        return h.storage.get_run(short.run_id), h.storage.get_run(long.run_id), took

    short, long, took = run_async(go())
    assert short.status == SUCCESS
    assert long.status == CANCELED and long.error == "the manager shut down"
    assert took >= 2.0


async def _wait_waiting(c: RunCoordinator, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while c.prestart.waiting() != count:
        assert time.monotonic() < deadline, f"{c.prestart.waiting()} waiting, not {count}"
        await asyncio.sleep(0.02)


def _waiting_pids(c: RunCoordinator) -> List[int]:
    return [e.held.pid for w in c.prestart._waiting.values() for e in w]


def test_a_run_takes_the_process_started_ahead_for_its_location(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> Any:
        c = h.coordinator()
        await c.start()
        c.warm("loc", time.time() + 60)
        c.warm("loc", time.time() + 60)
        await _wait_waiting(c, 2)
        ahead = _waiting_pids(c)
        await asyncio.sleep(0.5)  # nothing of the user's runs in them meanwhile
        assert not (tmp_path / "code" / "imported").exists()
        run = await c.submit("loc", "hello", origin={"kind": "manual"})
        record = await h.until_final(run.run_id)
        left = _waiting_pids(c)
        await c.shutdown(0)
        return record, ahead, left, dict(c.prestart.counts)

    record, ahead, left, counts = run_async(go())
    assert record.status == SUCCESS, record
    assert record.pid == ahead[0]  # the oldest waiting process ran it
    assert left == ahead[1:]
    assert counts == {"started": 2, "taken": 1, "unused": 0}
    assert (tmp_path / "code" / "imported").read_text().split() == [str(record.pid)]
    assert ("log", "INFO", "hello from hello") in [
        (line.stream, line.level, line.text) for line in h.storage.read_logs(record.run_id)
    ]
    assert not any(alive(pid) for pid in ahead)  # the unused one was killed at shutdown


def test_an_unused_process_started_ahead_is_killed_when_its_time_is_up(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> Any:
        c = h.coordinator()
        await c.start()
        c.warm("loc", time.time() + 1.0)
        await _wait_waiting(c, 1)
        pid = _waiting_pids(c)[0]
        assert alive(pid)
        await _wait_waiting(c, 0, timeout=10)
        deadline = time.monotonic() + 10
        while alive(pid):
            assert time.monotonic() < deadline, "the unused process lives on"
            await asyncio.sleep(0.02)
        counts = dict(c.prestart.counts)
        await c.shutdown(0)
        return counts

    assert run_async(go()) == {"started": 1, "taken": 0, "unused": 1}


def test_a_process_started_ahead_with_another_plan_is_not_used(tmp_path: Path) -> None:
    # the location's environment changed between the warm-up and the run (a reload)
    h = Harness(tmp_path)

    async def go() -> Any:
        c = h.coordinator()
        await c.start()
        c.warm("loc", time.time() + 60)
        await _wait_waiting(c, 1)
        stale = _waiting_pids(c)[0]
        h.plan = dataclasses.replace(h.plan, env=dict(h.plan.env, TEAM_COLOR="green"))
        run = await c.submit("loc", "hello", origin={"kind": "manual"})
        record = await h.until_final(run.run_id)
        await c.shutdown(0)
        return record, stale, dict(c.prestart.counts)

    record, stale, counts = run_async(go())
    assert record.status == SUCCESS and record.pid != stale
    assert counts == {"started": 1, "taken": 0, "unused": 1}
    assert not alive(stale)


def test_a_long_line_is_kept_whole_in_the_runs_log(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> RunRecord:
        c = h.coordinator()
        await c.start()
        run = await c.submit("loc", "long_line", origin={"kind": "manual"})
        record = await h.until_final(run.run_id)
        await c.shutdown(0)
        return record

    record = run_async(go())
    assert record.status == SUCCESS, record
    out = [line.text for line in h.storage.read_logs(record.run_id) if line.stream == "stdout"]
    assert out[-1] == "after"
    assert "".join(out[:-1]) == "x" * 100000 + "é" * 50000 + "end"
    assert len(out) > 2  # in pieces, none longer than a log line may be


def test_prints_and_log_records_keep_the_order_the_job_wrote_them_in(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def go() -> RunRecord:
        c = h.coordinator()
        await c.start()
        run = await c.submit("loc", "interleaved", origin={"kind": "manual"})
        record = await h.until_final(run.run_id)
        await c.shutdown(0)
        return record

    record = run_async(go())
    assert record.status == SUCCESS, record
    lines = [line for line in h.storage.read_logs(record.run_id) if line.stream != "wsm"]
    expected = []
    for i in range(50):
        expected += [("stdout", f"print {i}"), ("log", f"log {i}"), ("stderr", f"err {i}")]
    expected.append(("stdout", "no newline at the end"))
    assert [(line.stream, line.text) for line in lines] == expected
    times = [line.time for line in lines]
    assert times == sorted(times)

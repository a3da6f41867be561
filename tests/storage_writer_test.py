"""AsyncStorage: writes in call order on one thread, reads beside them, log lines batched,
and the event loop never waiting on the disk."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from workspace_manager.storage import writer
from workspace_manager.storage.records import (
    STARTED,
    SUCCESS,
    LogLine,
    RunRecord,
    TickRecord,
)
from workspace_manager.storage.sqlite import SqliteStorage
from workspace_manager.storage.writer import AsyncStorage


class Recording(SqliteStorage):
    """Records which thread ran each call, in order; `gate` (when set up) holds the named
    method until released."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: List[Tuple[str, str]] = []
        self.gates: dict = {}

    def _hold(self, name: str) -> None:
        self.calls.append((name, threading.current_thread().name))
        gate = self.gates.get(name)
        if gate is not None:
            assert gate.wait(60), f"{name} was never released"

    def add_run(self, run: RunRecord, message: str = "") -> RunRecord:
        self._hold("add_run")
        return super().add_run(run, message)

    def update_run(self, run_id: str, **kw: Any) -> RunRecord:
        self._hold("update_run")
        return super().update_run(run_id, **kw)

    def append_logs(self, lines: Any) -> None:
        self._hold("append_logs")
        super().append_logs(lines)

    def get_run(self, run_id: str) -> RunRecord:
        self._hold("get_run")
        return super().get_run(run_id)


def test_writes_reach_the_database_in_call_order(tmp_path: Path) -> None:
    async def main() -> None:
        store = AsyncStorage(Recording(tmp_path / "runs.db"))
        # Called one after the other, awaited together: the order of the calls is kept,
        # not the order in which the event loop happens to start the awaitables.
        steps = [store.add_run(RunRecord("r1", "loc", "job"))]
        steps += [store.update_run("r1", pid=i) for i in range(200)]
        steps.append(store.update_run("r1", status=STARTED, message="go"))
        steps.append(store.update_run("r1", status=SUCCESS, exit_code=0))
        results = await asyncio.gather(*reversed(steps))
        assert results[0].status == SUCCESS and results[0].pid == 199
        run = await store.get_run("r1")
        assert (run.status, run.pid, run.exit_code, run.end_seq) == (SUCCESS, 199, 0, 1)
        assert [e.status for e in await store.run_events("r1")] == ["QUEUED", STARTED, SUCCESS]
        threads = {thread for name, thread in store.storage.calls if name != "get_run"}  # type: ignore[attr-defined]
        assert len(threads) == 1 and threads.pop().startswith("wsm-storage-write")
        await store.close()

    asyncio.run(main())


def test_log_lines_go_before_a_later_write(tmp_path: Path) -> None:
    """A run's last lines are stored before its final status: `--follow` that stops at the
    final status has seen them all."""

    async def main() -> None:
        inner = Recording(tmp_path / "runs.db")
        store = AsyncStorage(inner)
        await store.add_run(RunRecord("r1", "loc", "job"))
        for i in range(3):
            store.log(LogLine("r1", time.time(), "stdout", f"last {i}"))
        await store.update_run("r1", status=SUCCESS)
        assert [name for name, _ in inner.calls] == ["add_run", "append_logs", "update_run"]
        assert [x.text for x in await store.read_logs("r1")] == ["last 0", "last 1", "last 2"]
        await store.close()

    asyncio.run(main())


def test_reads_are_not_behind_a_slow_write(tmp_path: Path) -> None:
    async def main() -> None:
        inner = Recording(tmp_path / "runs.db")
        store = AsyncStorage(inner)
        await store.add_run(RunRecord("r1", "loc", "job"))
        gate = inner.gates["update_run"] = threading.Event()
        slow = asyncio.ensure_future(store.update_run("r1", status=STARTED))
        # The write is held on the write thread; reads are answered meanwhile.
        run = await asyncio.wait_for(store.get_run("r1"), 30)
        counts = await asyncio.wait_for(store.run_counts(), 30)
        assert run.status == "QUEUED" and counts["QUEUED"] == 1 and not slow.done()
        gate.set()
        assert (await slow).status == STARTED
        await store.close()

    asyncio.run(main())


def test_loop_runs_while_the_disk_is_stalled(tmp_path: Path) -> None:
    """The write thread is stuck in append_logs; the pump's 10,000 `log()` calls all return
    and a 5 ms ticker keeps ticking: nothing on the loop waits for the disk."""

    async def main() -> None:
        inner = Recording(tmp_path / "runs.db")
        store = AsyncStorage(inner)
        await store.add_run(RunRecord("r1", "loc", "job"))
        gate = inner.gates["append_logs"] = threading.Event()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        for i in range(10_000):
            store.log(LogLine("r1", time.time(), "stdout", f"line {i}"))
            if i % 100 == 0:
                await asyncio.sleep(0.001)
        before = ticks
        await asyncio.sleep(0.1)
        assert ticks > before  # the loop is alive while the write thread is still stuck
        assert not gate.is_set() and any(name == "append_logs" for name, _ in inner.calls)
        gate.set()
        await store.flush_logs()
        task.cancel()
        lines = await store.read_logs("r1", limit=20_000)
        assert [x.seq for x in lines] == list(range(1, 10_001))
        assert [x.text for x in lines[:2]] == ["line 0", "line 1"]
        await store.close()

    asyncio.run(main())


def test_loop_lag_while_10000_lines_are_written(tmp_path: Path) -> None:
    """On the real storage: 10,000 lines in batches, the loop's lag probed every 5 ms."""

    async def main() -> Tuple[float, int]:
        inner = Recording(tmp_path / "runs.db")
        store = AsyncStorage(inner)
        await store.add_run(RunRecord("r1", "loc", "job"))
        lags: List[float] = []

        async def probe() -> None:
            loop = asyncio.get_running_loop()
            while True:
                start = loop.time()
                await asyncio.sleep(0.005)
                lags.append(loop.time() - start - 0.005)

        task = asyncio.ensure_future(probe())
        for i in range(10_000):
            store.log(LogLine("r1", time.time(), "stdout", "x" * 80))
            if i % 250 == 0:
                await asyncio.sleep(0.002)
        await store.flush_logs()
        task.cancel()
        assert len(await store.read_logs("r1", limit=20_000)) == 10_000
        batches = sum(1 for name, _ in inner.calls if name == "append_logs")
        await store.close()
        return max(lags), batches

    worst, batches = asyncio.run(main())
    # Batched (not one transaction per line), and no probe waited anything like a disk
    # write of the whole burst; the bound is generous for a loaded machine.
    assert 20 <= batches <= 200
    assert worst < 1.0, worst


def test_close_drains_every_write(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"

    async def main() -> None:
        store = AsyncStorage(SqliteStorage(path))
        await store.add_run(RunRecord("r1", "loc", "job"))
        pending = [store.add_run(RunRecord(f"q{i}", "loc", "job")) for i in range(50)]
        for i in range(1234):
            store.log(LogLine("r1", time.time(), "stderr", f"{i}"))
        tick = store.record_tick(
            TickRecord("loc", "s", "sensor", 1.0), [RunRecord("k", "loc", "job", run_key="a")]
        )
        await store.close()
        await store.close()  # idempotent
        for waiting in pending + [tick]:
            await waiting
        with pytest.raises(RuntimeError, match="closed"):
            store.get_run("r1")
        store.log(LogLine("r1", 0.0, "stdout", "after close"))
        assert store.dropped_lines == 1

    asyncio.run(main())
    again = SqliteStorage(path)
    assert len(again.list_runs(limit=None)) == 52
    assert len(again.read_logs("r1", limit=5000)) == 1234
    again.close()


def test_close_waits_for_a_running_read_before_closing_its_connection(tmp_path: Path) -> None:
    """A read running in a reader thread when close() is called finishes on its open
    connection, and only then is the storage closed (closing a connection under a running
    statement crashed the process: daemon_service_test, in CI)."""

    class SlowRead(Recording):
        closed_during_read = False
        reading = False

        def get_run(self, run_id: str) -> RunRecord:
            self.reading = True
            try:
                return super().get_run(run_id)
            finally:
                self.reading = False

        def close(self) -> None:
            self.closed_during_read = self.reading
            super().close()

    async def main() -> None:
        inner = SlowRead(tmp_path / "runs.db")
        store = AsyncStorage(inner)
        await store.add_run(RunRecord("r1", "loc", "job"))
        gate = inner.gates["get_run"] = threading.Event()
        read = asyncio.ensure_future(store.get_run("r1"))
        while not inner.calls or inner.calls[-1][0] != "get_run":
            await asyncio.sleep(0.01)
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0.3)
        assert not closing.done()  # it waits for the read
        gate.set()
        assert (await read).run_id == "r1"
        await asyncio.wait_for(closing, 30)
        assert not inner.closed_during_read

    asyncio.run(main())


def test_a_failed_batch_never_reaches_the_pump(tmp_path: Path, caplog) -> None:
    async def main() -> AsyncStorage:
        store = AsyncStorage(SqliteStorage(tmp_path / "runs.db"))
        await store.add_run(RunRecord("r1", "loc", "job"))
        store.log(LogLine("ghost", 0.0, "stdout", "lost"))
        store.log(LogLine("r1", 0.0, "stdout", "kept"))
        await store.flush_logs()
        assert [x.text for x in await store.read_logs("r1")] == ["kept"]
        await store.close()
        return store

    store = asyncio.run(main())
    assert store.failed_batches == 1 and "ghost" in caplog.text


def test_lines_beyond_the_cap_are_dropped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "LOG_MAX_PENDING", 100)
    monkeypatch.setattr(writer, "LOG_BATCH_LINES", 10)

    async def main() -> None:
        inner = Recording(tmp_path / "runs.db")
        store = AsyncStorage(inner)
        await store.add_run(RunRecord("r1", "loc", "job"))
        gate = inner.gates["append_logs"] = threading.Event()
        for i in range(150):
            store.log(LogLine("r1", 0.0, "stdout", str(i)))
        assert store.dropped_lines == 50
        gate.set()
        await store.flush_logs()
        assert len(await store.read_logs("r1")) == 100
        store.log(LogLine("r1", 0.0, "stdout", "room again"))
        await store.flush_logs()
        assert (await store.read_logs("r1", after_seq=100))[0].text == "room again"
        await store.close()

    asyncio.run(main())


def test_every_storage_method_is_wrapped_with_its_parameters() -> None:
    import inspect

    from workspace_manager.storage.base import Storage

    for name in sorted(Storage.__abstractmethods__):
        wrapped = getattr(AsyncStorage, name, None)
        assert wrapped is not None, f"AsyncStorage lacks {name}"
        ours = list(inspect.signature(wrapped).parameters.values())
        theirs = list(inspect.signature(getattr(Storage, name)).parameters.values())
        assert [(p.name, p.kind, p.default) for p in ours] == [
            (p.name, p.kind, p.default) for p in theirs
        ], name


class Batches(Recording):
    """Recording, plus the size of each record_ticks batch."""

    def record_ticks(self, items: Any) -> Any:
        self._hold(f"record_ticks({len(items)})")
        return super().record_ticks(items)


def test_ticks_waiting_for_the_writer_go_in_one_transaction_in_their_place(
    tmp_path: Path,
) -> None:
    """A burst of sensor ticks is one commit per batch, not one per tick; a write called
    between two ticks still goes between them; each caller gets its own tick or error."""

    async def main() -> None:
        storage = Batches(tmp_path / "runs.db")
        store = AsyncStorage(storage)
        gate = storage.gates["add_run"] = threading.Event()
        first = store.add_run(RunRecord("r1", "loc", "job"))
        await asyncio.sleep(0.05)  # the write thread is held in add_run
        early = [
            store.record_tick(
                TickRecord("loc", f"s{i}", "sensor", float(i)),
                [RunRecord(f"k{i}", "loc", "job", run_key="same")],
            )
            for i in range(100)
        ]
        bad = store.record_tick(TickRecord("loc", "s0", "sensor", 0.0, tick_id=10**6))
        between = store.update_run("r1", pid=7)
        late = [store.record_tick(TickRecord("loc", "x", "sensor", float(i))) for i in range(50)]
        gate.set()
        await first
        stored = await asyncio.gather(*early, *late)
        with pytest.raises(Exception, match="no tick 1000000 to update"):
            await bad
        assert (await between).pid == 7
        assert [name for name, _ in storage.calls if name != "get_run"] == [
            "add_run",
            "record_ticks(101)",
            "update_run",
            "record_ticks(50)",
        ]
        ids = [tick.tick_id for tick, _ in stored]
        assert ids == sorted(ids) and len(set(ids)) == 150
        # each of the first 100 is a different sensor: each launched its own run
        assert all(len(created) == 1 for _, created in stored[:100])
        assert len(await store.list_runs(limit=None)) == 101
        await store.close()

    asyncio.run(main())

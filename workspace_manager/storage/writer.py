"""`AsyncStorage`: the manager's way to use a `Storage` without its event loop waiting on
the disk.

- Writes (add_run, update_run, set_instigator, record_tick, append_logs, prune) go to ONE
  dedicated thread, in the order they were called: a write is submitted when its method
  is called (not when the returned awaitable is first awaited), so `store.add_run(a)`
  then `store.update_run(a.run_id, ...)` reach the database in that order even if the
  caller gathers them.
- Reads go to a small pool of other threads: with SQLite in WAL mode a read never waits
  for a write in progress, so `wsm run list` through the API stays fast while a big
  prune runs.
- Log lines: `log(line)` is a plain, non-blocking call for the output pumps. Lines are
  buffered and written by one `append_logs` per batch: the batch goes when it reaches
  `LOG_BATCH_LINES` lines or `LOG_BATCH_SECONDS` after its first line. Any other write
  first sends the lines buffered before it, so a run's last lines are stored before its
  final status. `await flush_logs()` waits until every line logged so far is stored.
  When more than `LOG_MAX_PENDING` lines wait for the disk, new ones are dropped and
  counted (`dropped_lines`): a stalled disk costs lines, not the manager's memory.
- Ticks: `record_tick` calls made while the write thread is busy are written together, by
  one `record_ticks` (one transaction; each tick kept or not on its own), in their place
  in the order of writes: a burst of 1,000 sensor ticks costs a few commits, not 1,000.
  Each call still answers with its own tick (or its own error).
- `await close()` sends the buffered lines, waits for every write submitted, then closes
  the storage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .base import RunNotFound, Storage
from .records import InstigatorState, LogLine, Retention, RunEvent, RunRecord, TickRecord

LOG_BATCH_LINES = 500
LOG_BATCH_SECONDS = 0.05
LOG_MAX_PENDING = 100_000
READ_THREADS = 3

log = logging.getLogger(__name__)


async def _wait(future: asyncio.Future[Any]) -> Any:
    return await future


class _TickBatch:
    """record_tick calls waiting for the write thread; closed once it took them."""

    __slots__ = ("items", "futures", "taken", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: List[Tuple[TickRecord, List[RunRecord], Optional[InstigatorState]]] = []
        self.futures: List[asyncio.Future[Any]] = []
        self.taken = False
        self.loop = loop


def _settle(futures: List[asyncio.Future[Any]], results: List[Any]) -> None:
    for future, result in zip(futures, results):
        if future.done():  # cancelled by its caller: the tick is stored all the same
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


class AsyncStorage:
    """Every method of `Storage` as an awaitable (`await store.add_run(run)`), off the
    event loop. Make it and call it from the loop's thread."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "wsm-storage-write")
        self._readers = concurrent.futures.ThreadPoolExecutor(READ_THREADS, "wsm-storage-read")
        self._lines: List[LogLine] = []
        self._timer: Optional[asyncio.TimerHandle] = None
        self._last_logs: Optional[asyncio.Future[Any]] = None
        self._pending_lines = 0
        self._closed = False
        # The tick batch last given to the write thread, while nothing was submitted after
        # it (more ticks may join it until the thread takes it).
        self._ticks: Optional[_TickBatch] = None
        self._ticks_lock = threading.Lock()
        #: Lines lost: dropped while too many waited for the disk, or in a failed batch.
        self.dropped_lines = 0
        #: Batches whose append_logs raised (logged as a warning).
        self.failed_batches = 0
        #: Called on the loop with each batch of `log()` lines once committed, every line
        #: with its `seq` (lines of unknown runs left out): the manager's live events
        #: (web/events.py) publish exactly what a reader of the storage can then find.
        self.on_logs: Optional[Callable[[List[LogLine]], None]] = None

    # -- plumbing -------------------------------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        # The loop of each call, not one remembered: one AsyncStorage may serve successive
        # asyncio.run()s (a test, a CLI); its threads belong to no loop.
        return asyncio.get_running_loop()

    def _write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        if self._closed:
            raise RuntimeError("AsyncStorage is closed")
        self._send_lines()
        self._ticks = None  # later ticks go after this write
        loop = self._get_loop()
        future = loop.run_in_executor(self._writer, lambda: fn(*args, **kwargs))
        return _wait(future)

    def _read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        if self._closed:
            raise RuntimeError("AsyncStorage is closed")
        loop = self._get_loop()
        future = loop.run_in_executor(self._readers, lambda: fn(*args, **kwargs))
        return _wait(future)

    # -- log lines ------------------------------------------------------------------------

    def log(self, line: LogLine) -> None:
        """Queue one line for storage; never blocks, never raises (see the module doc)."""
        if self._closed or self._pending_lines >= LOG_MAX_PENDING:
            self.dropped_lines += 1
            return
        self._lines.append(line)
        self._pending_lines += 1
        if len(self._lines) >= LOG_BATCH_LINES:
            self._send_lines()
        elif self._timer is None:
            self._timer = self._get_loop().call_later(LOG_BATCH_SECONDS, self._send_lines)

    def _send_lines(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        batch, self._lines = self._lines, []
        self._ticks = None  # later ticks go after these lines
        future = self._get_loop().run_in_executor(self._writer, self.storage.append_logs, batch)
        future.add_done_callback(lambda f: self._batch_done(f, batch))
        self._last_logs = future

    def _batch_done(self, future: asyncio.Future[Any], batch: List[LogLine]) -> None:
        size = len(batch)
        self._pending_lines -= size
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self.failed_batches += 1
            # RunNotFound keeps the other runs' lines; anything else lost the batch.
            if not isinstance(error, RunNotFound):
                self.dropped_lines += size
            log.warning("storing %d log lines: %s", size, error)
        if self.on_logs is not None and (error is None or isinstance(error, RunNotFound)):
            try:  # a committed line has its seq; one of an unknown run kept 0
                self.on_logs([line for line in batch if line.seq])
            except Exception as exc:  # a listener's bug costs its events, never the lines
                log.error("on_logs failed: %s: %s", type(exc).__name__, exc)

    async def flush_logs(self) -> None:
        """Wait until every line given to `log()` so far is stored (or its batch failed)."""
        self._send_lines()
        if self._last_logs is not None:
            await asyncio.wait([self._last_logs])

    # -- runs -----------------------------------------------------------------------------

    def add_run(self, run: RunRecord, message: str = "") -> Awaitable[RunRecord]:
        return self._write(self.storage.add_run, run, message)

    def update_run(
        self, run_id: str, *, status: Optional[str] = None, message: str = "", **fields: object
    ) -> Awaitable[RunRecord]:
        return self._write(
            self.storage.update_run, run_id, status=status, message=message, **fields
        )

    def get_run(self, run_id: str) -> Awaitable[RunRecord]:
        return self._read(self.storage.get_run, run_id)

    def list_runs(
        self,
        *,
        statuses: Optional[Sequence[str]] = None,
        location: Optional[str] = None,
        job: Optional[str] = None,
        limit: Optional[int] = 50,
        before: Optional[Tuple[float, str]] = None,
    ) -> Awaitable[List[RunRecord]]:
        return self._read(
            self.storage.list_runs,
            statuses=statuses,
            location=location,
            job=job,
            limit=limit,
            before=before,
        )

    def run_counts(self) -> Awaitable[Dict[str, int]]:
        return self._read(self.storage.run_counts)

    def location_run_counts(self, failed_since: float) -> Awaitable[Dict[str, Dict[str, int]]]:
        return self._read(self.storage.location_run_counts, failed_since)

    def finished_runs_after(self, end_seq: int, limit: int = 100) -> Awaitable[List[RunRecord]]:
        return self._read(self.storage.finished_runs_after, end_seq, limit)

    def max_end_seq(self) -> Awaitable[int]:
        return self._read(self.storage.max_end_seq)

    def run_events(self, run_id: str) -> Awaitable[List[RunEvent]]:
        return self._read(self.storage.run_events, run_id)

    def last_seen(self, run_id: str) -> Awaitable[Optional[float]]:
        return self._read(self.storage.last_seen, run_id)

    def last_tick_time(self) -> Awaitable[Optional[float]]:
        return self._read(self.storage.last_tick_time)

    # -- logs -----------------------------------------------------------------------------

    def append_logs(self, lines: Iterable[LogLine]) -> Awaitable[None]:
        """Store `lines` now (one transaction, after the lines buffered by `log()`)."""
        return self._write(self.storage.append_logs, list(lines))

    def read_logs(
        self, run_id: str, after_seq: int = 0, limit: int = 1000
    ) -> Awaitable[List[LogLine]]:
        return self._read(self.storage.read_logs, run_id, after_seq, limit)

    # -- schedules and sensors --------------------------------------------------------------

    def get_instigator(self, location: str, name: str, kind: str) -> Awaitable[InstigatorState]:
        return self._read(self.storage.get_instigator, location, name, kind)

    def list_instigators(self, kind: Optional[str] = None) -> Awaitable[List[InstigatorState]]:
        return self._read(self.storage.list_instigators, kind)

    def set_instigator(self, state: InstigatorState) -> Awaitable[InstigatorState]:
        return self._write(self.storage.set_instigator, state)

    # -- ticks ----------------------------------------------------------------------------

    def record_tick(
        self,
        tick: TickRecord,
        runs: Sequence[RunRecord] = (),
        state: Optional[InstigatorState] = None,
    ) -> asyncio.Future[Tuple[TickRecord, List[RunRecord]]]:
        """`Storage.record_tick` on the write thread, in the order of writes; joins the
        ticks already waiting for the thread when nothing else was submitted since (see
        the module doc). The future is resolved on the loop once the batch committed."""
        if self._closed:
            raise RuntimeError("AsyncStorage is closed")
        self._send_lines()
        loop = self._get_loop()
        future: asyncio.Future[Any] = loop.create_future()
        item = (tick, list(runs), state)
        batch = self._ticks
        if batch is not None and batch.loop is loop:
            with self._ticks_lock:
                if not batch.taken:
                    batch.items.append(item)
                    batch.futures.append(future)
                    return future
        batch = self._ticks = _TickBatch(loop)
        batch.items.append(item)
        batch.futures.append(future)
        self._writer.submit(self._write_ticks, batch)
        return future

    def _write_ticks(self, batch: _TickBatch) -> None:
        """On the write thread: the batch in one record_ticks, answered in one loop call."""
        with self._ticks_lock:
            batch.taken = True
        try:
            results: List[Any] = list(self.storage.record_ticks(batch.items))
        except Exception as exc:
            results = [exc] * len(batch.items)
        try:
            batch.loop.call_soon_threadsafe(_settle, batch.futures, results)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def list_ticks(
        self,
        location: Optional[str],
        name: str,
        kind: str,
        limit: int = 20,
        statuses: Optional[Sequence[str]] = None,
    ) -> Awaitable[List[TickRecord]]:
        return self._read(self.storage.list_ticks, location, name, kind, limit, statuses)

    def tick_counts(self) -> Awaitable[Dict[Tuple[str, str], int]]:
        return self._read(self.storage.tick_counts)

    # -- upkeep ---------------------------------------------------------------------------

    def prune(self, now: float, retention: Retention) -> Awaitable[Dict[str, int]]:
        """On the write thread: other writes wait behind it, but the deletes go in small
        transactions, so readers (other processes too) never do."""
        return self._write(self.storage.prune, now, retention)

    def integrity_problems(self) -> Awaitable[List[str]]:
        return self._read(self.storage.integrity_problems)

    async def close(self) -> None:
        """Store the buffered lines, wait for every write submitted, close the storage.
        Idempotent."""
        if self._closed:
            return
        self._send_lines()
        barrier = self._get_loop().run_in_executor(self._writer, lambda: None)
        self._closed = True
        await asyncio.wait([barrier])
        self._writer.shutdown(wait=False)
        await self._get_loop().run_in_executor(None, self._close_after_reads)

    def _close_after_reads(self) -> None:
        """Close the storage once no read runs: a read still running in a reader thread uses
        its thread's connection, which `storage.close` closes, and SQLite closing a
        connection under a running statement crashes the process (a segfault, seen in CI).
        Reads not started yet are cancelled."""
        self._readers.shutdown(wait=True, cancel_futures=True)
        self.storage.close()

"""The one interface the daemon, the run coordinator, the CLI and the JSON API use to keep
and read records. A backend implements it (storage/sqlite.py: the embedded default); a
server database (PostgreSQL) is another implementation of this class and nothing else.

Every method is synchronous and may block on the disk: the manager calls them through
`storage/writer.py` (one writer thread) so its loop never waits; the CLI calls them
directly. Every method that writes commits before it returns: a record it returned is
durable against `kill -9` of the caller.
"""

from __future__ import annotations

import abc
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .records import (
    FAILURE,
    IN_PROGRESS_STATUSES,
    QUEUED,
    InstigatorState,
    LogLine,
    Retention,
    RunEvent,
    RunRecord,
    TickRecord,
)


class StorageError(Exception):
    """The storage cannot do what was asked (corrupt, too new a schema, read-only, ...)."""


class RunNotFound(StorageError):
    """No run has this id (or id prefix); or a prefix names several (the message says)."""


class AmbiguousRunId(RunNotFound):
    """A run id prefix that names several runs (the message says so)."""


class SchemaTooNew(StorageError):
    """The database was written by a newer wsm (its schema version is above ours)."""


class Storage(abc.ABC):
    """Runs, their events and logs, schedule and sensor state, ticks."""

    # -- runs -----------------------------------------------------------------------------

    @abc.abstractmethod
    def add_run(self, run: RunRecord, message: str = "") -> RunRecord:
        """Insert `run` (its status, normally QUEUED) and its first status event.

        A run with a `run_key` and an origin naming a sensor or schedule is refused when
        that instigator (location, name) used the key before: raises `RunKeyUsed`.
        Returns the stored record."""

    @abc.abstractmethod
    def update_run(
        self, run_id: str, *, status: Optional[str] = None, message: str = "", **fields: object
    ) -> RunRecord:
        """Set `status` (adding a status event with `message`) and/or other fields of
        RunRecord (pid, start_time, started_at, ended_at, exit_code, signal, error,
        traceback, ...). Reaching a final status gives the run its `end_seq`. A run already
        final is not changed (returned as is): a late exit never overwrites a cancel.
        Raises RunNotFound."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or with this unique id prefix (at least 4 characters).
        Raises RunNotFound (unknown, or an ambiguous prefix)."""

    @abc.abstractmethod
    def list_runs(
        self,
        *,
        statuses: Optional[Sequence[str]] = None,
        location: Optional[str] = None,
        job: Optional[str] = None,
        limit: Optional[int] = 50,
        before: Optional[Tuple[float, str]] = None,
    ) -> List[RunRecord]:
        """Runs newest first (by created_at, then run_id). `before` is the (created_at,
        run_id) of the last run of the previous page: keyset paging, fast on 10,000s."""

    @abc.abstractmethod
    def run_counts(self) -> Dict[str, int]:
        """How many runs are in each status (every status of RUN_STATUSES present)."""

    def location_run_counts(self, failed_since: float) -> Dict[str, Dict[str, int]]:
        """{location: {"queued", "in_progress", "failed_recent"}} for every location with a
        run queued, in progress (STARTING, STARTED, CANCELING) or FAILURE ended at or after
        `failed_since` (Unix seconds): what the web page's overview shows per location. This
        default pages through every run; a backend may do better (SQLite: two grouped
        queries on its status indexes)."""
        out: Dict[str, Dict[str, int]] = {}
        before: Optional[Tuple[float, str]] = None
        while True:
            page = self.list_runs(limit=1000, before=before)
            for run in page:
                key = _count_key(run, failed_since)
                if key is not None:
                    counts = out.setdefault(run.location, dict.fromkeys(_COUNT_KEYS, 0))
                    counts[key] += 1
            if len(page) < 1000:
                return out
            before = (page[-1].created_at, page[-1].run_id)

    @abc.abstractmethod
    def finished_runs_after(self, end_seq: int, limit: int = 100) -> List[RunRecord]:
        """Runs that reached a final status with an end_seq above `end_seq`, in end_seq
        order: what a run status sensor has not yet been given."""

    @abc.abstractmethod
    def max_end_seq(self) -> int:
        """The highest end_seq given (0 if none): a new run status sensor starts here."""

    @abc.abstractmethod
    def run_events(self, run_id: str) -> List[RunEvent]:
        """The run's status history, oldest first."""

    def last_seen(self, run_id: str) -> Optional[float]:
        """The latest time the records show the run doing something: its last status
        event or log line (None for an unknown run). Recovery takes it as the end of a run
        whose manager was killed. This default reads them all; a backend may do better."""
        times = [e.time for e in self.run_events(run_id)]
        after = 0
        while True:
            lines = self.read_logs(run_id, after, 1000)
            if not lines:
                break
            times.append(lines[-1].time)
            after = lines[-1].seq
        return max(times, default=None)

    def last_tick_time(self) -> Optional[float]:
        """The latest time any kept tick was recorded at (its tick time, start or end;
        None without ticks): only the manager records ticks, so it was alive then."""
        times: List[float] = []
        for state in self.list_instigators():
            for tick in self.list_ticks(state.location, state.name, state.kind, 1):
                times += [t for t in (tick.tick_time, tick.started_at, tick.ended_at) if t]
        return max(times, default=None)

    # -- logs -----------------------------------------------------------------------------

    @abc.abstractmethod
    def append_logs(self, lines: Iterable[LogLine]) -> None:
        """Store lines (any runs), giving each its seq. Batched by the caller."""

    @abc.abstractmethod
    def read_logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> List[LogLine]:
        """A run's lines with seq above `after_seq`, oldest first."""

    # -- schedules and sensors --------------------------------------------------------------

    @abc.abstractmethod
    def get_instigator(self, location: str, name: str, kind: str) -> InstigatorState:
        """The kept state; a fresh InstigatorState (nothing set) if none is kept."""

    @abc.abstractmethod
    def list_instigators(self, kind: Optional[str] = None) -> List[InstigatorState]:
        """Every kept state, of one kind or all."""

    @abc.abstractmethod
    def set_instigator(self, state: InstigatorState) -> InstigatorState:
        """Insert or replace the state of (location, name, kind)."""

    # -- ticks ----------------------------------------------------------------------------

    @abc.abstractmethod
    def record_tick(
        self,
        tick: TickRecord,
        runs: Sequence[RunRecord] = (),
        state: Optional[InstigatorState] = None,
    ) -> Tuple[TickRecord, List[RunRecord]]:
        """One transaction for one evaluation: store `tick` (new when tick_id is 0, else
        update it), insert `runs` (QUEUED) whose run_key the instigator has not used
        (the others' keys go to tick.run_keys_skipped), fill tick.run_ids, and store
        `state` (cursor, last_run_key, last_tick_time). Either all of it is kept or none.
        Returns the stored tick and the runs actually created."""

    def record_ticks(
        self,
        items: Sequence[Tuple[TickRecord, Sequence[RunRecord], Optional[InstigatorState]]],
    ) -> List[Union[Tuple[TickRecord, List[RunRecord]], Exception]]:
        """`record_tick` of each (tick, runs, state) of `items`, in order; each item is
        kept whole or not at all, on its own: the answer has, for each, what record_tick
        returns or the Exception it raised. A storage may do them in one transaction
        (SqliteStorage does: one commit for a burst of sensor ticks); this default does
        them one by one."""
        out: List[Union[Tuple[TickRecord, List[RunRecord]], Exception]] = []
        for tick, runs, state in items:
            try:
                out.append(self.record_tick(tick, runs, state))
            except Exception as exc:
                out.append(exc)
        return out

    @abc.abstractmethod
    def list_ticks(
        self,
        location: Optional[str],
        name: str,
        kind: str,
        limit: int = 20,
        statuses: Optional[Sequence[str]] = None,
    ) -> List[TickRecord]:
        """Recent ticks of one instigator (location None: any location), newest first."""

    @abc.abstractmethod
    def tick_counts(self) -> Dict[Tuple[str, str], int]:
        """{(kind, status): count} over the kept ticks, for /metrics."""

    # -- upkeep ---------------------------------------------------------------------------

    @abc.abstractmethod
    def prune(self, now: float, retention: Retention) -> Dict[str, int]:
        """Delete what `retention` no longer keeps (never a run that is not final, nor the
        run_keys of deleted runs: a key once used stays used). Returns counts by kind."""

    @abc.abstractmethod
    def integrity_problems(self) -> List[str]:
        """What the database's own check finds (SQLite: PRAGMA integrity_check); []."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the object is unusable after."""


_COUNT_KEYS = ("queued", "in_progress", "failed_recent")


def _count_key(run: RunRecord, failed_since: float) -> Optional[str]:
    if run.status == QUEUED:
        return "queued"
    if run.status in IN_PROGRESS_STATUSES:
        return "in_progress"
    if run.status == FAILURE and (run.ended_at or 0.0) >= failed_since:
        return "failed_recent"
    return None


class RunKeyUsed(StorageError):
    """add_run: the instigator launched a run with this run_key before."""

    def __init__(self, run_key: str, run_id: str) -> None:
        super().__init__(f"run_key {run_key!r} was used by run {run_id}")
        self.run_key = run_key
        self.run_id = run_id

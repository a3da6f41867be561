"""The embedded default backend: one SQLite file in WAL mode, through the standard library's
`sqlite3` alone: it imports in ~2 ms, so every `wsm` command that reads runs starts fast
(docs/daemon.md, "What the storage chose, and why").

Settings and why (https://www.sqlite.org/wal.html, https://www.sqlite.org/pragma.html):
- `journal_mode=WAL`: readers read a snapshot and never block the writer, nor it them
  (the CLI and the HTTP API read while the manager writes).
- `synchronous=NORMAL`: in WAL mode a commit is durable against the crash of any process
  (`kill -9`); only a power loss or OS crash may lose the last commits, never corrupt.
- `busy_timeout=5000`: two writers (the manager and `wsm job execute`) wait for each
  other up to 5 s instead of failing at once.
- `foreign_keys=ON`: a run's events and log lines go with it.
- Write transactions start with `BEGIN IMMEDIATE`: a read-then-write (the run_key check,
  "is this run final?") holds the write lock from its first read, so two processes cannot
  both pass the check. Read transactions are plain `BEGIN` (a snapshot from their first
  read). The driver's own transaction handling is off (`isolation_level=None`).
- The file is made 0600 in a 0700 folder (SPEC section 6); SQLite gives its -wal and -shm
  files the database file's mode.

Thread-safe: each thread has its own connection (made on its first call), kept until the
thread ends or `close()`. Statements are constant SQL strings with `?` parameters, so
`sqlite3`'s statement cache prepares each once per connection. JSON columns hold
`json.dumps` text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Type,
    Union,
)

from ..private_files import open_private, private_dir
from . import schema
from .base import AmbiguousRunId, RunKeyUsed, RunNotFound, Storage, StorageError
from .records import (
    FAILURE,
    FINAL_STATUSES,
    IN_PROGRESS_STATUSES,
    INSTIGATOR_KINDS,
    QUEUED,
    RUN_STATUSES,
    TICK_SKIPPED,
    TICK_SUCCESS,
    InstigatorState,
    LogLine,
    Retention,
    RunEvent,
    RunRecord,
    TickRecord,
    queued_message,
)

BUSY_TIMEOUT_MS = 5000
#: A run id prefix must be at least this long (SPEC section 7: "a unique prefix").
MIN_PREFIX = 4
#: Retention deletes in chunks of this many rows, each its own transaction, so the write
#: lock is never held for long and a reader's `wsm run list` is never behind a huge delete.
PRUNE_CHUNK = 500
PRUNE_LOG_LINES = 20_000
DAY = 86400.0
#: Values bound per `IN (...)` list: far below SQLite's limit (32,766 since 3.32).
_IN_SLICE = 500

_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))
_UPDATABLE = frozenset(_RUN_FIELDS) - {"run_id", "status", "end_seq"}
_TICK_FIELDS = tuple(f.name for f in dataclasses.fields(TickRecord))
_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(InstigatorState))
_LOG_FIELDS = tuple(f.name for f in dataclasses.fields(LogLine))
_RUN_JSON = frozenset({"run_config", "tags", "origin"})
_TICK_JSON = frozenset({"run_ids", "run_keys", "run_keys_skipped"})
_FINAL = tuple(sorted(FINAL_STATUSES))


def _dumps(value: Any) -> str:
    """A JSON column's text. Raises StorageError for a value JSON cannot hold."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"cannot store {type(value).__name__} as JSON: {exc}") from exc


_loads = json.loads


def _marks(n: int) -> str:
    """`?, ?, ...`: n parameter marks for an IN list."""
    return ", ".join("?" * n)


def _cols(names: Sequence[str]) -> str:
    return ", ".join(names)


# The columns in the order of the record's fields: a row becomes the record at once.
_SELECT_RUNS = f"SELECT {_cols(_RUN_FIELDS)} FROM runs"
_SELECT_TICKS = f"SELECT {_cols(_TICK_FIELDS)} FROM ticks"
_SELECT_STATES = f"SELECT {_cols(_STATE_FIELDS)} FROM instigators"
_INSERT_RUN = f"INSERT INTO runs ({_cols(_RUN_FIELDS)}) VALUES ({_marks(len(_RUN_FIELDS))})"
_INSERT_EVENT = "INSERT INTO run_events (run_id, time, status, message) VALUES (?, ?, ?, ?)"
_INSERT_KEY = (
    "INSERT INTO run_keys (location, name, kind, run_key, run_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_LOG = f"INSERT INTO run_logs ({_cols(_LOG_FIELDS)}) VALUES ({_marks(len(_LOG_FIELDS))})"
_TICK_VALUES = tuple(name for name in _TICK_FIELDS if name != "tick_id")
_INSERT_TICK = f"INSERT INTO ticks ({_cols(_TICK_VALUES)}) VALUES ({_marks(len(_TICK_VALUES))})"
_UPDATE_TICK = (
    f"UPDATE ticks SET {', '.join(f'{name} = ?' for name in _TICK_VALUES)} WHERE tick_id = ?"
)
_UPDATE_TICK_RUNS = (
    "UPDATE ticks SET run_ids = ?, run_keys = ?, run_keys_skipped = ? WHERE tick_id = ?"
)
_PUT_STATE = (
    f"INSERT INTO instigators ({_cols(_STATE_FIELDS)}) VALUES ({_marks(len(_STATE_FIELDS))})"
    " ON CONFLICT (location, name, kind) DO UPDATE SET "
    + ", ".join(
        f"{name} = excluded.{name}"
        for name in _STATE_FIELDS
        if name not in ("location", "name", "kind")
    )
)
_RUN_BY_ID = f"{_SELECT_RUNS} WHERE run_id = ?"
# A range on the primary key, not LIKE: SQLite's LIKE is case-insensitive and then skips
# the index; the range uses it (and means the same on any database with binary collation).
_RUNS_BY_PREFIX = f"{_SELECT_RUNS} WHERE run_id > ? AND run_id < ? ORDER BY run_id LIMIT 2"
_RUN_EXISTS = "SELECT 1 FROM runs WHERE run_id = ?"
_BUMP_END_SEQ = f"UPDATE counters SET value = value + 1 WHERE name = '{schema.END_SEQ}'"
_END_SEQ = f"SELECT value FROM counters WHERE name = '{schema.END_SEQ}'"
_LAST_SEQ = "SELECT max(seq) FROM run_logs WHERE run_id = ?"
_STATE_BY_KEY = f"{_SELECT_STATES} WHERE location = ? AND name = ? AND kind = ?"
_FINISHED_AFTER = f"{_SELECT_RUNS} WHERE end_seq > ? ORDER BY end_seq LIMIT ?"
_RUN_EVENTS = (
    "SELECT run_id, time, status, message FROM run_events WHERE run_id = ? ORDER BY event_id"
)
# The run's latest status event or log line (the last seq is its latest line).
_LAST_SEEN = (
    "SELECT MAX(t) FROM (SELECT MAX(time) AS t FROM run_events WHERE run_id = ?"
    " UNION ALL SELECT time FROM"
    " (SELECT time FROM run_logs WHERE run_id = ? ORDER BY seq DESC LIMIT 1))"
)
# The latest tick: by tick time (indexed), or the start or end of the last ticks stored.
_LAST_TICK = (
    "SELECT MAX(t) FROM (SELECT MAX(tick_time) AS t FROM ticks"
    " UNION ALL SELECT MAX(COALESCE(ended_at, started_at)) FROM"
    " (SELECT ended_at, started_at FROM ticks ORDER BY tick_id DESC LIMIT 100))"
)
_READ_LOGS = (
    f"SELECT {_cols(_LOG_FIELDS)} FROM run_logs WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_OLD_RUNS = f"SELECT run_id FROM runs WHERE ended_at < ? AND status IN ({_marks(len(_FINAL))})"
# Runs that still have line 1: lines go from the last down, so a run whose log went (or is
# going) is found by its first line.
_OLD_LOGS = f"SELECT run_id FROM run_logs WHERE run_id IN ({_OLD_RUNS}) AND seq = 1 LIMIT ?"
_DELETE_LOG_TAIL = "DELETE FROM run_logs WHERE run_id = ? AND seq > ?"


def _run(row: Sequence[Any]) -> RunRecord:
    # run_config, tags and origin are the 6th to 8th fields (records.RunRecord).
    return RunRecord(*row[:5], _loads(row[5]), _loads(row[6]), _loads(row[7]), *row[8:])  # type: ignore[call-arg, misc]


def _run_params(run: RunRecord) -> Tuple[Any, ...]:
    return tuple(
        _dumps(getattr(run, name)) if name in _RUN_JSON else getattr(run, name)
        for name in _RUN_FIELDS
    )


def _tick(row: Sequence[Any]) -> TickRecord:
    # run_ids, run_keys and run_keys_skipped are the last three fields (records.TickRecord).
    return TickRecord(*row[:11], _loads(row[11]), _loads(row[12]), _loads(row[13]))  # type: ignore[call-arg, misc]


def _tick_params(tick: TickRecord) -> Tuple[Any, ...]:
    return tuple(
        _dumps(getattr(tick, name)) if name in _TICK_JSON else getattr(tick, name)
        for name in _TICK_VALUES
    )


def _state(row: Sequence[Any]) -> InstigatorState:
    return InstigatorState(*row)


def _key_owner(run: RunRecord) -> Optional[Tuple[str, str, str]]:
    """(location, name, kind) of the schedule or sensor that launched `run`, if any."""
    origin = run.origin or {}
    kind, name = origin.get("kind"), origin.get("name")
    if kind in INSTIGATOR_KINDS and isinstance(name, str):
        return (run.location, name, kind)
    return None


def _slices(values: Sequence[Any], size: int = _IN_SLICE) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


class SqliteStorage(Storage):
    """`Storage` in the SQLite file `path`.

    `create=True` makes the file (0600) and its folder (0700) when missing; with
    `create=False` a missing file raises StorageError. Opening brings the schema up to date
    (schema.migrate) and raises SchemaTooNew for a database from a newer wsm, StorageError
    for a file that is not a wsm database (or not a database)."""

    def __init__(self, path: Union[str, os.PathLike[str]], *, create: bool = True) -> None:
        self.path = Path(path)
        #: Names the database in error messages.
        self.where = str(self.path)
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every connection made, by the thread that uses it: close() closes them all, and a
        # new one closes those of threads that ended.
        self._connections: Dict[threading.Thread, sqlite3.Connection] = {}
        self._closed = False
        if not self.path.exists():
            if not create:
                raise StorageError(f"no run database at {self.path}")
            try:
                private_dir(self.path.parent)
                os.close(open_private(self.path, os.O_RDWR))
            except OSError as exc:
                raise StorageError(f"cannot create {self.path}: {exc.strerror}") from exc
        try:
            # A read first: the CLI opening an up-to-date database never takes the write
            # lock (never waits behind the manager's writes); migrate() checks again under it.
            _while_locked(self._migrate_if_needed, StorageError)
        except BaseException:
            self.close()
            raise

    def _migrate_if_needed(self) -> None:
        with self._read() as conn:
            found = schema.current_version(conn)
        if found != schema.CURRENT_VERSION:
            with self._write() as conn:
                schema.migrate(conn, self.where)

    # -- connections and transactions ------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """A new connection with the pragmas set; registered for close()."""
        if self._closed:
            raise StorageError(f"{self.where}: the storage is closed")
        # check_same_thread=False only so close() may close it from another thread; each
        # connection is used by its own thread alone.
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            mode = _while_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                raise StorageError(f"{self.where}: SQLite would not use WAL mode (it uses {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        thread = threading.current_thread()
        with self._lock:
            for other in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(other).close()
            self._connections[thread] = conn
        self._local.conn = conn
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: Optional[sqlite3.Connection] = getattr(self._local, "conn", None)
        if conn is None or self._closed:
            conn = self._connect()
        return conn

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Driver errors become one-line StorageErrors naming the database."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StorageError(f"{self.where}: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._guard():
            conn = self._conn()
            if conn.in_transaction:
                # Left open by an interrupted block (KeyboardInterrupt in a COMMIT).
                conn.execute("ROLLBACK")
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (full disk, ...) may leave the transaction open.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE): committed when the block ends, rolled
        back if it raises."""
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One read transaction: a consistent snapshot for the block."""
        return self._transaction("BEGIN")

    # -- runs -----------------------------------------------------------------------------

    def _next_end_seq(self, conn: sqlite3.Connection) -> int:
        conn.execute(_BUMP_END_SEQ)
        return int(conn.execute(_END_SEQ).fetchone()[0])

    def _insert_runs(
        self,
        conn: sqlite3.Connection,
        runs: Sequence[RunRecord],
        message: Optional[str],
        now: float,
        key_owner: Optional[Tuple[str, str, str]],
    ) -> List[RunRecord]:
        """Insert `runs`, their first events and their run_key rows (if `key_owner`), one
        statement each for all of them. The caller checked the keys are unused. `message`
        None: each first event says who launched its run (`records.queued_message`)."""
        stored = []
        for run in runs:
            run = dataclasses.replace(run)
            if not run.created_at:
                run.created_at = now
            run.updated_at = now
            if run.status in FINAL_STATUSES:
                run.end_seq = self._next_end_seq(conn)
                if run.ended_at is None:
                    run.ended_at = now
            else:
                run.end_seq = None
            stored.append(run)
        if not stored:
            return stored
        conn.executemany(_INSERT_RUN, [_run_params(run) for run in stored])
        conn.executemany(
            _INSERT_EVENT,
            [
                (
                    run.run_id,
                    now,
                    run.status,
                    queued_message(run.origin) if message is None else message,
                )
                for run in stored
            ],
        )
        if key_owner is not None:
            location, name, kind = key_owner
            keys = [
                (location, name, kind, run.run_key, run.run_id, now)
                for run in stored
                if run.run_key is not None
            ]
            if keys:
                conn.executemany(_INSERT_KEY, keys)
        return stored

    def _keys_used(
        self, conn: sqlite3.Connection, owner: Tuple[str, str, str], run_keys: Sequence[str]
    ) -> Dict[str, str]:
        """{run_key: run_id} of those of `run_keys` the instigator `owner` used before."""
        used: Dict[str, str] = {}
        for keys in _slices(list(dict.fromkeys(run_keys))):
            rows = conn.execute(
                "SELECT run_key, run_id FROM run_keys WHERE location = ? AND name = ?"
                f" AND kind = ? AND run_key IN ({_marks(len(keys))})",
                (*owner, *keys),
            )
            used.update({key: run_id for key, run_id in rows})
        return used

    def add_run(self, run: RunRecord, message: str = "") -> RunRecord:
        """See `Storage.add_run`. A run id already stored raises StorageError."""
        owner = _key_owner(run)
        with self._write() as conn:
            if owner is not None and run.run_key is not None:
                used = self._keys_used(conn, owner, [run.run_key])
                if used:
                    raise RunKeyUsed(run.run_key, used[run.run_key])
            if conn.execute(_RUN_EXISTS, (run.run_id,)).fetchone():
                raise StorageError(f"a run with id {run.run_id} is already stored")
            return self._insert_runs(conn, [run], message, time.time(), owner)[0]

    def update_run(
        self, run_id: str, *, status: Optional[str] = None, message: str = "", **fields: object
    ) -> RunRecord:
        """See `Storage.update_run`. A field that is not RunRecord's (or is run_id or
        end_seq) raises TypeError; a status not in RUN_STATUSES raises ValueError. Reaching
        a final status without `ended_at` sets it to now."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise TypeError(f"update_run: not updatable: {', '.join(sorted(unknown))}")
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"update_run: unknown status {status!r}")
        with self._write() as conn:
            row = conn.execute(_RUN_BY_ID, (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id}")
            run = _run(row)
            if run.is_final:
                return run
            now = time.time()
            values: Dict[str, Any] = dict(fields)
            values["updated_at"] = now
            if status is not None and status != run.status:
                values["status"] = status
                conn.execute(_INSERT_EVENT, (run_id, now, status, message))
                if status in FINAL_STATUSES:
                    values["end_seq"] = self._next_end_seq(conn)
                    if values.get("ended_at") is None:
                        values["ended_at"] = now
            # The column names are RunRecord's own (checked above), never a caller's text.
            names = list(values)
            conn.execute(
                f"UPDATE runs SET {', '.join(f'{name} = ?' for name in names)} WHERE run_id = ?",
                (
                    *(_dumps(values[n]) if n in _RUN_JSON else values[n] for n in names),
                    run_id,
                ),
            )
            return dataclasses.replace(run, **values)

    def get_run(self, run_id: str) -> RunRecord:
        """See `Storage.get_run`."""
        with self._read() as conn:
            row = conn.execute(_RUN_BY_ID, (run_id,)).fetchone()
            if row is not None:
                return _run(row)
            if len(run_id) < MIN_PREFIX:
                raise RunNotFound(
                    f"no run {run_id!r} (a prefix needs at least {MIN_PREFIX} characters)"
                )
            rows = conn.execute(_RUNS_BY_PREFIX, (run_id, run_id + "\U0010ffff")).fetchall()
        rows = [r for r in rows if r[0].startswith(run_id)]
        if not rows:
            raise RunNotFound(f"no run {run_id!r}")
        if len(rows) > 1:
            raise AmbiguousRunId(f"{run_id!r} names several runs: give more of the id")
        return _run(rows[0])

    def list_runs(
        self,
        *,
        statuses: Optional[Sequence[str]] = None,
        location: Optional[str] = None,
        job: Optional[str] = None,
        limit: Optional[int] = 50,
        before: Optional[Tuple[float, str]] = None,
    ) -> List[RunRecord]:
        """See `Storage.list_runs`."""
        where: List[str] = []
        params: List[Any] = []
        if statuses:
            wanted = list(statuses)
            where.append(f"status IN ({_marks(len(wanted))})")
            params.extend(wanted)
        if location is not None:
            where.append("location = ?")
            params.append(location)
        if job is not None:
            where.append("job = ?")
            params.append(job)
        if before is not None:
            # A row-value comparison: one range on the (created_at, run_id) index.
            where.append("(created_at, run_id) < (?, ?)")
            params.extend(before)
        sql = _SELECT_RUNS
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, run_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as conn:
            return [_run(r) for r in conn.execute(sql, params)]

    def run_counts(self) -> Dict[str, int]:
        """See `Storage.run_counts`."""
        counts = dict.fromkeys(RUN_STATUSES, 0)
        with self._read() as conn:
            for status, n in conn.execute("SELECT status, count(*) FROM runs GROUP BY status"):
                counts[status] = int(n)
        return counts

    def location_run_counts(self, failed_since: float) -> Dict[str, Dict[str, int]]:
        """See `Storage.location_run_counts`. Both queries are ranges of ix_runs_status and
        ix_runs_status_ended, so their cost grows with the runs counted, not the runs kept."""
        out: Dict[str, Dict[str, int]] = {}

        def add(location: str, key: str, n: int) -> None:
            counts = out.setdefault(location, {"queued": 0, "in_progress": 0, "failed_recent": 0})
            counts[key] += int(n)

        busy = (QUEUED, *sorted(IN_PROGRESS_STATUSES))
        with self._read() as conn:
            for location, status, n in conn.execute(
                f"SELECT location, status, count(*) FROM runs WHERE status IN ({_marks(len(busy))})"
                " GROUP BY location, status",
                busy,
            ):
                add(location, "queued" if status == QUEUED else "in_progress", n)
            for location, n in conn.execute(
                "SELECT location, count(*) FROM runs WHERE status = ? AND ended_at >= ?"
                " GROUP BY location",
                (FAILURE, failed_since),
            ):
                add(location, "failed_recent", n)
        return out

    def finished_runs_after(self, end_seq: int, limit: int = 100) -> List[RunRecord]:
        """See `Storage.finished_runs_after`."""
        with self._read() as conn:
            return [_run(r) for r in conn.execute(_FINISHED_AFTER, (end_seq, limit))]

    def max_end_seq(self) -> int:
        """See `Storage.max_end_seq`: the counter, so a pruned run's number is not reused."""
        with self._read() as conn:
            row = conn.execute(_END_SEQ).fetchone()
        return int(row[0] or 0) if row is not None else 0

    def run_events(self, run_id: str) -> List[RunEvent]:
        """See `Storage.run_events` ([] for an unknown run)."""
        with self._read() as conn:
            return [RunEvent(*r) for r in conn.execute(_RUN_EVENTS, (run_id,))]

    def last_seen(self, run_id: str) -> Optional[float]:
        """See `Storage.last_seen`: two index lookups."""
        with self._read() as conn:
            row = conn.execute(_LAST_SEEN, (run_id, run_id)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def last_tick_time(self) -> Optional[float]:
        """See `Storage.last_tick_time`."""
        with self._read() as conn:
            row = conn.execute(_LAST_TICK).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- logs -----------------------------------------------------------------------------

    def append_logs(self, lines: Iterable[LogLine]) -> None:
        """See `Storage.append_logs`. Each line's `seq` is set in place (1, 2, ... per run).
        Lines of runs that are not stored are dropped, the others kept; then RunNotFound
        names the unknown runs."""
        batch = list(lines)
        if not batch:
            return
        wanted = list(dict.fromkeys(line.run_id for line in batch))
        unknown: Set[str] = set()
        with self._write() as conn:
            known: Set[str] = set()
            for ids in _slices(wanted):
                known.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT run_id FROM runs WHERE run_id IN ({_marks(len(ids))})", ids
                    )
                )
            unknown = set(wanted) - known
            last: Dict[str, int] = {}
            for run_id in known:
                last[run_id] = int(conn.execute(_LAST_SEQ, (run_id,)).fetchone()[0] or 0)
            rows = []
            for line in batch:
                if line.run_id in unknown:
                    continue
                last[line.run_id] += 1
                line.seq = last[line.run_id]
                rows.append(tuple(getattr(line, name) for name in _LOG_FIELDS))
            if rows:
                conn.executemany(_INSERT_LOG, rows)
        if unknown:
            raise RunNotFound(f"log lines for unknown runs dropped: {', '.join(sorted(unknown))}")

    def read_logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> List[LogLine]:
        """See `Storage.read_logs`."""
        with self._read() as conn:
            return [LogLine(*r) for r in conn.execute(_READ_LOGS, (run_id, after_seq, limit))]

    # -- schedules and sensors --------------------------------------------------------------

    def get_instigator(self, location: str, name: str, kind: str) -> InstigatorState:
        """See `Storage.get_instigator`."""
        with self._read() as conn:
            row = conn.execute(_STATE_BY_KEY, (location, name, kind)).fetchone()
        return _state(row) if row is not None else InstigatorState(location, name, kind)

    def list_instigators(self, kind: Optional[str] = None) -> List[InstigatorState]:
        """See `Storage.list_instigators` (ordered by location, name, kind)."""
        sql, params = _SELECT_STATES, ()  # type: Tuple[str, Tuple[str, ...]]
        if kind is not None:
            sql, params = sql + " WHERE kind = ?", (kind,)
        with self._read() as conn:
            return [_state(r) for r in conn.execute(sql + " ORDER BY location, name, kind", params)]

    def _put_state(
        self, conn: sqlite3.Connection, state: InstigatorState, now: float
    ) -> InstigatorState:
        state = dataclasses.replace(state, updated_at=now)
        conn.execute(_PUT_STATE, tuple(getattr(state, name) for name in _STATE_FIELDS))
        return state

    def set_instigator(self, state: InstigatorState) -> InstigatorState:
        """See `Storage.set_instigator`."""
        with self._write() as conn:
            return self._put_state(conn, state, time.time())

    # -- ticks ----------------------------------------------------------------------------

    def record_tick(
        self,
        tick: TickRecord,
        runs: Sequence[RunRecord] = (),
        state: Optional[InstigatorState] = None,
    ) -> Tuple[TickRecord, List[RunRecord]]:
        """See `Storage.record_tick`. The run_key dedupe is per (tick.location, tick.name,
        tick.kind), also between runs of this one call. A run's `origin` names its tick:
        an empty origin becomes {"kind", "name", "tick_id"} (+ "run_key" for a sensor), and
        an origin of the tick's kind gets "tick_id" when it has none. `tick.run_keys` gains
        the keys of the runs created."""
        with self._write() as conn:
            return self._record_tick(conn, tick, runs, state)

    def record_ticks(
        self,
        items: Sequence[Tuple[TickRecord, Sequence[RunRecord], Optional[InstigatorState]]],
    ) -> List[Union[Tuple[TickRecord, List[RunRecord]], Exception]]:
        """See `Storage.record_ticks`: one transaction, each item in its own SAVEPOINT (an
        item that fails is rolled back alone). A failed COMMIT raises for all of them."""
        out: List[Union[Tuple[TickRecord, List[RunRecord]], Exception]] = []
        with self._write() as conn:
            for tick, runs, state in items:
                conn.execute("SAVEPOINT tick")
                try:
                    out.append(self._record_tick(conn, tick, runs, state))
                except sqlite3.Error as exc:
                    # the transaction may be gone with it (a full disk): then all fail
                    conn.execute("ROLLBACK TO tick")
                    out.append(StorageError(f"{self.where}: {exc}"))
                except Exception as exc:
                    conn.execute("ROLLBACK TO tick")
                    out.append(exc)
                conn.execute("RELEASE tick")
        return out

    def _record_tick(
        self,
        conn: sqlite3.Connection,
        tick: TickRecord,
        runs: Sequence[RunRecord],
        state: Optional[InstigatorState],
    ) -> Tuple[TickRecord, List[RunRecord]]:
        """`record_tick` inside the caller's transaction."""
        tick = dataclasses.replace(
            tick,
            run_ids=list(tick.run_ids),
            run_keys=list(tick.run_keys),
            run_keys_skipped=list(tick.run_keys_skipped),
        )
        owner = (tick.location, tick.name, tick.kind)
        now = time.time()
        if not tick.started_at:
            tick.started_at = now
        used = self._keys_used(conn, owner, [r.run_key for r in runs if r.run_key])
        seen: Set[str] = set()
        kept: List[RunRecord] = []
        for run in runs:
            if run.run_key is not None:
                if run.run_key in seen or run.run_key in used:
                    if run.run_key not in tick.run_keys_skipped:
                        tick.run_keys_skipped.append(run.run_key)
                    continue
                seen.add(run.run_key)
            kept.append(run)
        if runs and not kept and tick.status == TICK_SUCCESS:
            # every request's run_key launched before: nothing happened (Dagster's sensor
            # daemon records such a tick SKIPPED too: it has no run)
            tick.status = TICK_SKIPPED
            tick.skip_reason = tick.skip_reason or _keys_used_reason(tick.run_keys_skipped)
        if tick.tick_id:
            done = conn.execute(_UPDATE_TICK, (*_tick_params(tick), tick.tick_id))
            if done.rowcount == 0:
                raise StorageError(f"no tick {tick.tick_id} to update")
        else:
            cursor = conn.execute(_INSERT_TICK, _tick_params(tick))
            assert cursor.lastrowid is not None
            tick.tick_id = int(cursor.lastrowid)
        fresh: List[RunRecord] = []
        for run in kept:
            origin = dict(run.origin or {})
            if not origin:
                origin = {"kind": tick.kind, "name": tick.name}
                if tick.kind == "sensor":
                    origin["run_key"] = run.run_key
            if origin.get("kind") == tick.kind and not origin.get("tick_id"):
                origin["tick_id"] = tick.tick_id
            fresh.append(dataclasses.replace(run, origin=origin))
        created = self._insert_runs(conn, fresh, None, now, owner)
        for stored in created:
            tick.run_ids.append(stored.run_id)
            if stored.run_key is not None and stored.run_key not in tick.run_keys:
                tick.run_keys.append(stored.run_key)
        if created or tick.run_keys_skipped:
            conn.execute(
                _UPDATE_TICK_RUNS,
                (
                    _dumps(tick.run_ids),
                    _dumps(tick.run_keys),
                    _dumps(tick.run_keys_skipped),
                    tick.tick_id,
                ),
            )
        if state is not None:
            self._put_state(conn, state, now)
        return tick, created

    def list_ticks(
        self,
        location: Optional[str],
        name: str,
        kind: str,
        limit: int = 20,
        statuses: Optional[Sequence[str]] = None,
    ) -> List[TickRecord]:
        """See `Storage.list_ticks`."""
        sql = _SELECT_TICKS + " WHERE name = ? AND kind = ?"
        params: List[Any] = [name, kind]
        if location is not None:
            sql += " AND location = ?"
            params.append(location)
        if statuses:
            wanted = list(statuses)
            sql += f" AND status IN ({_marks(len(wanted))})"
            params.extend(wanted)
        sql += " ORDER BY tick_id DESC LIMIT ?"
        params.append(limit)
        with self._read() as conn:
            return [_tick(r) for r in conn.execute(sql, params)]

    def tick_counts(self) -> Dict[Tuple[str, str], int]:
        """See `Storage.tick_counts`."""
        with self._read() as conn:
            rows = conn.execute("SELECT kind, status, count(*) FROM ticks GROUP BY kind, status")
            return {(kind, status): int(n) for kind, status, n in rows}

    # -- upkeep ---------------------------------------------------------------------------

    def _delete_chunks(self, select_ids: str, params: Sequence[Any], delete: str) -> int:
        """Delete in chunks: `select_ids` (SQL with `params`, a LIMIT of PRUNE_CHUNK added)
        picks keys, `delete` is a DELETE whose WHERE ends in `IN`, completed with the keys;
        each chunk one transaction."""
        total = 0
        while True:
            with self._write() as conn:
                ids = [r[0] for r in conn.execute(select_ids + " LIMIT ?", (*params, PRUNE_CHUNK))]
                if not ids:
                    return total
                for some in _slices(ids):
                    total += int(
                        conn.execute(f"{delete} ({_marks(len(some))})", some).rowcount or 0
                    )
            if len(ids) < PRUNE_CHUNK:
                return total

    def prune(self, now: float, retention: Retention) -> Dict[str, int]:
        """See `Storage.prune`. Runs: final runs that ended more than `runs_days` ago, with
        their events and log lines. Logs: every line of a final run that ended more than
        `logs_days` ago (a run's log goes whole, never its first half). Ticks: by
        tick_time; skipped ticks after `skipped_ticks_days`. Run keys stay.
        Returns {"runs", "logs", "ticks"} counts deleted."""
        counts = {"runs": 0, "logs": 0, "ticks": 0}
        # The lines of runs about to be deleted go first too, in chunks: a run's delete
        # would take its lines with it (a cascade of maybe millions, in one transaction).
        log_days = [d for d in (retention.logs_days, retention.runs_days) if d is not None]
        if log_days:
            counts["logs"] = self._delete_logs(now - min(log_days) * DAY)
        if retention.runs_days is not None:
            counts["runs"] = self._delete_chunks(
                _OLD_RUNS,
                (now - retention.runs_days * DAY, *_FINAL),
                "DELETE FROM runs WHERE run_id IN",
            )
        for days, only_skipped in (
            (retention.skipped_ticks_days, True),
            (retention.ticks_days, False),
        ):
            if days is None:
                continue
            pick = "SELECT tick_id FROM ticks WHERE tick_time < ?"
            params: Tuple[Any, ...] = (now - days * DAY,)
            if only_skipped:
                pick += " AND status = ?"
                params += (TICK_SKIPPED,)
            counts["ticks"] += self._delete_chunks(
                pick, params, "DELETE FROM ticks WHERE tick_id IN"
            )
        return counts

    def _delete_logs(self, cutoff: float) -> int:
        """Delete every line of the final runs that ended before `cutoff`, at most
        PRUNE_LOG_LINES lines per transaction, from each run's last line down."""
        total = 0
        while True:
            with self._write() as conn:
                budget = PRUNE_LOG_LINES
                ids = [r[0] for r in conn.execute(_OLD_LOGS, (cutoff, *_FINAL, PRUNE_CHUNK))]
                for run_id in ids:
                    top = int(conn.execute(_LAST_SEQ, (run_id,)).fetchone()[0] or 0)
                    take = min(top, budget)
                    total += int(conn.execute(_DELETE_LOG_TAIL, (run_id, top - take)).rowcount or 0)
                    budget -= take
                    if budget <= 0:
                        break
            if not ids:
                return total

    def integrity_problems(self) -> List[str]:
        """`PRAGMA integrity_check`: [] when it says ok, else its lines."""
        with self._read() as conn:
            lines = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        return [] if lines == ["ok"] else lines

    def close(self) -> None:
        """See `Storage.close`: closes the connection of every thread."""
        with self._lock:
            self._closed = True
            connections = list(self._connections.values())
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


def _keys_used_reason(keys: Sequence[str]) -> str:
    """A skipped tick's reason when every run it requested had launched before."""
    shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    return f"every run_key was used before ({shown})"


def _while_locked(
    attempt: Callable[[], Any], kind: Type[BaseException] = sqlite3.OperationalError
) -> Any:
    """`attempt()`, again while it fails with "database is locked" (SQLITE_BUSY), for up to
    the busy timeout. Some steps do not wait through SQLite's busy handler: switching a
    fresh database to WAL, and reading one whose first writer is still creating it
    (sqlite.org/wal.html, "Sometimes Queries Return SQLITE_BUSY In WAL Mode")."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            return attempt()
        except kind as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

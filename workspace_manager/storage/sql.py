"""`Storage` in portable SQLAlchemy Core: every query of the interface, for any engine.

A backend (storage/sqlite.py) makes the engine, says how a write transaction starts
(`_write_options`, e.g. SQLite's BEGIN IMMEDIATE) and runs the migrations; the queries here
use only Core constructs that SQLite and PostgreSQL both run (no upsert dialects, no
RETURNING, no LIKE on ids), so a server database is a new backend module, not new queries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import sqlalchemy as sa

from . import schema as t
from .base import RunKeyUsed, RunNotFound, Storage, StorageError
from .records import (
    FINAL_STATUSES,
    INSTIGATOR_KINDS,
    RUN_STATUSES,
    TICK_SKIPPED,
    InstigatorState,
    LogLine,
    Retention,
    RunEvent,
    RunRecord,
    TickRecord,
)

#: A run id prefix must be at least this long (SPEC section 7: "a unique prefix").
MIN_PREFIX = 4
#: Retention deletes in chunks of this many rows, each its own transaction, so the write
#: lock is never held for long and a reader's `wsm run list` is never behind a huge delete.
PRUNE_CHUNK = 500
PRUNE_LOG_LINES = 20_000
DAY = 86400.0

_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))
_UPDATABLE = frozenset(_RUN_FIELDS) - {"run_id", "status", "end_seq"}
_TICK_FIELDS = tuple(f.name for f in dataclasses.fields(TickRecord))
_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(InstigatorState))
_LOG_FIELDS = tuple(f.name for f in dataclasses.fields(LogLine))


# Statements built once, values given at execution: SQLAlchemy then finds the compiled SQL
# in its cache at once, instead of building and hashing a new statement per call (that
# made add_run 3x and get_run 4x slower; bench/storage_bench.py).
_B = sa.bindparam
# The columns in the order of the record's fields: a row becomes `Record(*row)`.
_RUNS = sa.select(*(t.runs.c[name] for name in _RUN_FIELDS))
_TICKS = sa.select(*(t.ticks.c[name] for name in _TICK_FIELDS))
_STATES = sa.select(*(t.instigators.c[name] for name in _STATE_FIELDS))
_INSERT_RUN = t.runs.insert()
_INSERT_EVENT = t.run_events.insert()
_INSERT_KEY = t.run_keys.insert()
_INSERT_LOGS = t.run_logs.insert()
_INSERT_TICK = t.ticks.insert()
_INSERT_STATE = t.instigators.insert()
_RUN_BY_ID = _RUNS.where(t.runs.c.run_id == _B("p_run_id"))
_RUNS_BY_PREFIX = (
    _RUNS.where(t.runs.c.run_id > _B("p_low"), t.runs.c.run_id < _B("p_high"))
    .order_by(t.runs.c.run_id)
    .limit(2)
)
_RUN_EXISTS = sa.select(t.runs.c.run_id).where(t.runs.c.run_id == _B("p_run_id"))
# The SET clause comes from the keys given at execution.
_UPDATE_RUN = t.runs.update().where(t.runs.c.run_id == _B("p_run_id"))
_UPDATE_TICK = t.ticks.update().where(t.ticks.c.tick_id == _B("p_tick_id"))
_UPDATE_STATE = t.instigators.update().where(
    t.instigators.c.location == _B("p_location"),
    t.instigators.c.name == _B("p_name"),
    t.instigators.c.kind == _B("p_kind"),
)
_KEYS_USED = sa.select(t.run_keys.c.run_key, t.run_keys.c.run_id).where(
    t.run_keys.c.location == _B("p_location"),
    t.run_keys.c.name == _B("p_name"),
    t.run_keys.c.kind == _B("p_kind"),
    t.run_keys.c.run_key.in_(_B("p_run_keys", expanding=True)),
)
_BUMP_END_SEQ = (
    t.counters.update().where(t.counters.c.name == t.END_SEQ).values(value=t.counters.c.value + 1)
)
_END_SEQ = sa.select(t.counters.c.value).where(t.counters.c.name == t.END_SEQ)
_LAST_SEQ = sa.select(sa.func.max(t.run_logs.c.seq)).where(t.run_logs.c.run_id == _B("p_run_id"))
_STATE_BY_KEY = _STATES.where(
    t.instigators.c.location == _B("p_location"),
    t.instigators.c.name == _B("p_name"),
    t.instigators.c.kind == _B("p_kind"),
)


def _fields(record: Any, names: Sequence[str]) -> Dict[str, Any]:
    """A record's fields as a dict, without dataclasses.asdict's deep copies."""
    return {name: getattr(record, name) for name in names}


def _run(row: Any) -> RunRecord:
    return RunRecord(*row)


def _tick(row: Any) -> TickRecord:
    return TickRecord(*row)


def _state(row: Any) -> InstigatorState:
    return InstigatorState(*row)


def _key_owner(run: RunRecord) -> Optional[Tuple[str, str, str]]:
    """(location, name, kind) of the schedule or sensor that launched `run`, if any."""
    origin = run.origin or {}
    kind, name = origin.get("kind"), origin.get("name")
    if kind in INSTIGATOR_KINDS and isinstance(name, str):
        return (run.location, name, kind)
    return None


class SqlStorage(Storage):
    """The queries of `Storage` on a SQLAlchemy engine. `where` names the database in
    error messages (a path, a URL without password)."""

    def __init__(self, engine: sa.Engine, where: str) -> None:
        self._engine = engine
        self.where = where
        # Log lines are the bulk of all writes: they go to the driver's executemany with
        # the INSERT compiled once for this dialect, skipping SQLAlchemy's per-row parameter
        # processing (2-3x the cost of SQLite's own work; the columns need none).
        compiled = _INSERT_LOGS.compile(dialect=engine.dialect, column_keys=list(_LOG_FIELDS))
        self._insert_logs_sql = str(compiled)
        self._insert_logs_order: Optional[Tuple[str, ...]] = (
            tuple(compiled.positiontup or ()) if compiled.positional else None
        )

    # -- transactions ---------------------------------------------------------------------

    _write_options: Dict[str, Any] = {}

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Driver errors become one-line StorageErrors naming the database."""
        try:
            yield
        except sa.exc.SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            detail = str(orig) if orig is not None else str(exc).splitlines()[0]
            raise StorageError(f"{self.where}: {detail}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._guard(), self._engine.connect() as conn:
            conn.execution_options(**self._write_options)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """One read transaction: a consistent snapshot for the block."""
        with self._guard(), self._engine.connect() as conn, conn.begin():
            yield conn

    # -- runs -----------------------------------------------------------------------------

    def _next_end_seq(self, conn: sa.Connection) -> int:
        conn.execute(_BUMP_END_SEQ)
        return int(conn.execute(_END_SEQ).scalar_one())

    def _insert_runs(
        self,
        conn: sa.Connection,
        runs: Sequence[RunRecord],
        message: str,
        now: float,
        key_owner: Optional[Tuple[str, str, str]],
    ) -> List[RunRecord]:
        """Insert `runs`, their first events and their run_key rows (if `key_owner`), one
        statement each for all of them. The caller checked the keys are unused."""
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
        conn.execute(_INSERT_RUN, [_fields(run, _RUN_FIELDS) for run in stored])
        conn.execute(
            _INSERT_EVENT,
            [
                {"run_id": run.run_id, "time": now, "status": run.status, "message": message}
                for run in stored
            ],
        )
        if key_owner is not None:
            location, name, kind = key_owner
            keys = [
                {
                    "location": location,
                    "name": name,
                    "kind": kind,
                    "run_key": run.run_key,
                    "run_id": run.run_id,
                    "created_at": now,
                }
                for run in stored
                if run.run_key is not None
            ]
            if keys:
                conn.execute(_INSERT_KEY, keys)
        return stored

    def _keys_used(
        self, conn: sa.Connection, owner: Tuple[str, str, str], run_keys: Sequence[str]
    ) -> Dict[str, str]:
        """{run_key: run_id} of those of `run_keys` the instigator `owner` used before."""
        if not run_keys:
            return {}
        location, name, kind = owner
        used: Dict[str, str] = {}
        # In slices: SQLite has a limit on bound parameters (32,766 since 3.32).
        keys = list(dict.fromkeys(run_keys))
        for i in range(0, len(keys), 500):
            rows = conn.execute(
                _KEYS_USED,
                {
                    "p_location": location,
                    "p_name": name,
                    "p_kind": kind,
                    "p_run_keys": keys[i : i + 500],
                },
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
            if conn.execute(_RUN_EXISTS, {"p_run_id": run.run_id}).first():
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
            row = conn.execute(_RUN_BY_ID, {"p_run_id": run_id}).first()
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
                conn.execute(
                    _INSERT_EVENT,
                    {"run_id": run_id, "time": now, "status": status, "message": message},
                )
                if status in FINAL_STATUSES:
                    values["end_seq"] = self._next_end_seq(conn)
                    if values.get("ended_at") is None:
                        values["ended_at"] = now
            conn.execute(_UPDATE_RUN, {"p_run_id": run_id, **values})
            return dataclasses.replace(run, **values)

    def get_run(self, run_id: str) -> RunRecord:
        """See `Storage.get_run`."""
        with self._read() as conn:
            row = conn.execute(_RUN_BY_ID, {"p_run_id": run_id}).first()
            if row is not None:
                return _run(row)
            if len(run_id) < MIN_PREFIX:
                raise RunNotFound(
                    f"no run {run_id!r} (a prefix needs at least {MIN_PREFIX} characters)"
                )
            # A range on the primary key, not LIKE: LIKE is case-insensitive on SQLite and
            # then skips the index; a range uses it on every database.
            rows = conn.execute(
                _RUNS_BY_PREFIX, {"p_low": run_id, "p_high": run_id + "\U0010ffff"}
            ).all()
        rows = [r for r in rows if r.run_id.startswith(run_id)]
        if not rows:
            raise RunNotFound(f"no run {run_id!r}")
        if len(rows) > 1:
            raise RunNotFound(f"{run_id!r} names several runs: give more of the id")
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
        c = t.runs.c
        query = _RUNS.order_by(c.created_at.desc(), c.run_id.desc())
        if statuses:
            query = query.where(c.status.in_(list(statuses)))
        if location is not None:
            query = query.where(c.location == location)
        if job is not None:
            query = query.where(c.job == job)
        if before is not None:
            created, rid = before
            # A row-value comparison: one range on the (created_at, run_id) index.
            query = query.where(
                sa.tuple_(c.created_at, c.run_id) < sa.tuple_(sa.literal(created), sa.literal(rid))
            )
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [_run(r) for r in conn.execute(query)]

    def run_counts(self) -> Dict[str, int]:
        """See `Storage.run_counts`."""
        counts = dict.fromkeys(RUN_STATUSES, 0)
        with self._read() as conn:
            for status, n in conn.execute(
                sa.select(t.runs.c.status, sa.func.count()).group_by(t.runs.c.status)
            ):
                counts[status] = int(n)
        return counts

    def finished_runs_after(self, end_seq: int, limit: int = 100) -> List[RunRecord]:
        """See `Storage.finished_runs_after`."""
        c = t.runs.c
        with self._read() as conn:
            rows = conn.execute(_RUNS.where(c.end_seq > end_seq).order_by(c.end_seq).limit(limit))
            return [_run(r) for r in rows]

    def max_end_seq(self) -> int:
        """See `Storage.max_end_seq`: the counter, so a pruned run's number is not reused."""
        with self._read() as conn:
            value = conn.execute(_END_SEQ).scalar()
        return int(value or 0)

    def run_events(self, run_id: str) -> List[RunEvent]:
        """See `Storage.run_events` ([] for an unknown run)."""
        e = t.run_events.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(e.run_id, e.time, e.status, e.message)
                .where(e.run_id == run_id)
                .order_by(e.event_id)
            )
            return [RunEvent(r.run_id, r.time, r.status, r.message) for r in rows]

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
            known = set(
                conn.execute(sa.select(t.runs.c.run_id).where(t.runs.c.run_id.in_(wanted)))
                .scalars()
                .all()
            )
            unknown = set(wanted) - known
            last: Dict[str, int] = {}
            for run_id in known:
                last[run_id] = int(conn.execute(_LAST_SEQ, {"p_run_id": run_id}).scalar() or 0)
            rows = []
            for line in batch:
                if line.run_id in unknown:
                    continue
                last[line.run_id] += 1
                line.seq = last[line.run_id]
                rows.append(_fields(line, _LOG_FIELDS))
            if rows:
                order = self._insert_logs_order
                params: List[Any] = rows
                if order is not None:
                    params = [tuple(row[name] for name in order) for row in rows]
                conn.exec_driver_sql(self._insert_logs_sql, params)
        if unknown:
            raise RunNotFound(f"log lines for unknown runs dropped: {', '.join(sorted(unknown))}")

    def read_logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> List[LogLine]:
        """See `Storage.read_logs`."""
        c = t.run_logs.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(*(getattr(c, name) for name in _LOG_FIELDS))
                .where(c.run_id == run_id, c.seq > after_seq)
                .order_by(c.seq)
                .limit(limit)
            )
            return [LogLine(**r._mapping) for r in rows]

    # -- schedules and sensors --------------------------------------------------------------

    def get_instigator(self, location: str, name: str, kind: str) -> InstigatorState:
        """See `Storage.get_instigator`."""
        with self._read() as conn:
            row = conn.execute(
                _STATE_BY_KEY, {"p_location": location, "p_name": name, "p_kind": kind}
            ).first()
        return _state(row) if row is not None else InstigatorState(location, name, kind)

    def list_instigators(self, kind: Optional[str] = None) -> List[InstigatorState]:
        """See `Storage.list_instigators` (ordered by location, name, kind)."""
        c = t.instigators.c
        query = _STATES.order_by(c.location, c.name, c.kind)
        if kind is not None:
            query = query.where(c.kind == kind)
        with self._read() as conn:
            return [_state(r) for r in conn.execute(query)]

    def _put_state(
        self, conn: sa.Connection, state: InstigatorState, now: float
    ) -> InstigatorState:
        # Portable upsert: update, and insert when nothing was there (the write transaction
        # is exclusive, so nobody inserts in between).
        state = dataclasses.replace(state, updated_at=now)
        values = _fields(state, _STATE_FIELDS)
        where = {"p_location": state.location, "p_name": state.name, "p_kind": state.kind}
        done = conn.execute(_UPDATE_STATE, {**where, **values})
        if done.rowcount == 0:
            conn.execute(_INSERT_STATE, values)
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
        created: List[RunRecord] = []
        with self._write() as conn:
            values = _fields(tick, _TICK_FIELDS)
            del values["tick_id"]
            if tick.tick_id:
                done = conn.execute(_UPDATE_TICK, {"p_tick_id": tick.tick_id, **values})
                if done.rowcount == 0:
                    raise StorageError(f"no tick {tick.tick_id} to update")
            else:
                result = conn.execute(_INSERT_TICK, values)
                key = result.inserted_primary_key
                assert key is not None
                tick.tick_id = int(key[0])
            used = self._keys_used(conn, owner, [r.run_key for r in runs if r.run_key])
            seen: Set[str] = set()
            fresh: List[RunRecord] = []
            for run in runs:
                if run.run_key is not None:
                    if run.run_key in seen or run.run_key in used:
                        if run.run_key not in tick.run_keys_skipped:
                            tick.run_keys_skipped.append(run.run_key)
                        continue
                    seen.add(run.run_key)
                origin = dict(run.origin or {})
                if not origin:
                    origin = {"kind": tick.kind, "name": tick.name}
                    if tick.kind == "sensor":
                        origin["run_key"] = run.run_key
                if origin.get("kind") == tick.kind and not origin.get("tick_id"):
                    origin["tick_id"] = tick.tick_id
                fresh.append(dataclasses.replace(run, origin=origin))
            created = self._insert_runs(conn, fresh, "", now, owner)
            for stored in created:
                tick.run_ids.append(stored.run_id)
                if stored.run_key is not None and stored.run_key not in tick.run_keys:
                    tick.run_keys.append(stored.run_key)
            if created or tick.run_keys_skipped:
                conn.execute(
                    _UPDATE_TICK,
                    {
                        "p_tick_id": tick.tick_id,
                        "run_ids": tick.run_ids,
                        "run_keys": tick.run_keys,
                        "run_keys_skipped": tick.run_keys_skipped,
                    },
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
        c = t.ticks.c
        query = _TICKS.where(c.name == name, c.kind == kind).order_by(c.tick_id.desc()).limit(limit)
        if location is not None:
            query = query.where(c.location == location)
        if statuses:
            query = query.where(c.status.in_(list(statuses)))
        with self._read() as conn:
            return [_tick(r) for r in conn.execute(query)]

    def tick_counts(self) -> Dict[Tuple[str, str], int]:
        """See `Storage.tick_counts`."""
        c = t.ticks.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(c.kind, c.status, sa.func.count()).group_by(c.kind, c.status)
            )
            return {(kind, status): int(n) for kind, status, n in rows}

    # -- upkeep ---------------------------------------------------------------------------

    def _delete_chunks(self, select_ids: sa.Select[Any], delete: Any) -> int:
        """Delete in chunks: `select_ids` (limited to PRUNE_CHUNK) picks keys, `delete(ids)`
        is the statement; each chunk one transaction."""
        total = 0
        while True:
            with self._write() as conn:
                ids = conn.execute(select_ids.limit(PRUNE_CHUNK)).scalars().all()
                if not ids:
                    return total
                total += int(conn.execute(delete(ids)).rowcount or 0)
            if len(ids) < PRUNE_CHUNK:
                return total

    def prune(self, now: float, retention: Retention) -> Dict[str, int]:
        """See `Storage.prune`. Runs: final runs that ended more than `runs_days` ago, with
        their events and log lines. Logs: every line of a final run that ended more than
        `logs_days` ago (a run's log goes whole, never its first half). Ticks: by
        tick_time; skipped ticks after `skipped_ticks_days`. Run keys stay.
        Returns {"runs", "logs", "ticks"} counts deleted."""
        counts = {"runs": 0, "logs": 0, "ticks": 0}
        r, lg, tk = t.runs.c, t.run_logs.c, t.ticks.c
        final = list(FINAL_STATUSES)
        # The lines of runs about to be deleted go first too, in chunks: a run's delete
        # would take its lines with it (a cascade of maybe millions, in one transaction).
        log_days = [d for d in (retention.logs_days, retention.runs_days) if d is not None]
        if log_days:
            cutoff = now - min(log_days) * DAY
            old_runs = sa.select(r.run_id).where(r.ended_at < cutoff, r.status.in_(final))
            # Only runs that still have line 1: lines go from the last down, so a run whose
            # log went (or is going) is found by its first line.
            pick = sa.select(lg.run_id).where(lg.run_id.in_(old_runs), lg.seq == 1)
            counts["logs"] = self._delete_logs(pick)
        if retention.runs_days is not None:
            cutoff = now - retention.runs_days * DAY
            counts["runs"] = self._delete_chunks(
                sa.select(r.run_id).where(r.ended_at < cutoff, r.status.in_(final)),
                lambda ids: t.runs.delete().where(r.run_id.in_(ids)),
            )
        for days, only_skipped in (
            (retention.skipped_ticks_days, True),
            (retention.ticks_days, False),
        ):
            if days is None:
                continue
            pick_ticks = sa.select(tk.tick_id).where(tk.tick_time < now - days * DAY)
            if only_skipped:
                pick_ticks = pick_ticks.where(tk.status == TICK_SKIPPED)
            counts["ticks"] += self._delete_chunks(
                pick_ticks, lambda ids: t.ticks.delete().where(tk.tick_id.in_(ids))
            )
        return counts

    def _delete_logs(self, pick_runs: sa.Select[Any]) -> int:
        """Delete every line of the runs `pick_runs` finds, at most PRUNE_LOG_LINES lines
        per transaction, from each run's last line down."""
        lg = t.run_logs.c
        total = 0
        while True:
            with self._write() as conn:
                budget = PRUNE_LOG_LINES
                ids = conn.execute(pick_runs.limit(PRUNE_CHUNK)).scalars().all()
                for run_id in ids:
                    top = int(conn.execute(_LAST_SEQ, {"p_run_id": run_id}).scalar() or 0)
                    take = min(top, budget)
                    total += int(
                        conn.execute(
                            t.run_logs.delete().where(lg.run_id == run_id, lg.seq > top - take)
                        ).rowcount
                        or 0
                    )
                    budget -= take
                    if budget <= 0:
                        break
            if not ids:
                return total

    def integrity_problems(self) -> List[str]:
        """See `Storage.integrity_problems` (the SQLite backend overrides it)."""
        return []

    def close(self) -> None:
        """See `Storage.close`."""
        self._engine.dispose()

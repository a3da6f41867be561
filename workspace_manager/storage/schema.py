"""The tables of the run database (SQLAlchemy Core) and their versioned migrations.

The schema has a version, kept in `schema_version` (one row per migration applied, so the
history is in the database). `MIGRATIONS` is the ordered list of steps; step N takes a
database at version N-1 to version N. `migrate()` applies the missing steps in one
transaction, so a `kill -9` in the middle leaves the database at its old version, and
refuses a database whose version is above `CURRENT_VERSION` (a newer wsm wrote it).

Rule for later versions: a step never changes; version 1 creates the tables as they are
written below *today*. When version 2 alters a table, the table definition below changes,
`_v1` gets its own frozen copy of the old shape, and `_v2` holds the ALTER/copy.
The SQL is portable Core (no SQLite-only statements in the steps), so a PostgreSQL backend
runs the same steps.
"""

from __future__ import annotations

import time
from typing import Callable, List, Tuple

import sqlalchemy as sa

from .base import SchemaTooNew, StorageError

metadata = sa.MetaData()

# Times are Unix seconds (float, UTC), as in records.py.
_Time = sa.Double

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("location", sa.String, nullable=False),
    sa.Column("repository", sa.String),
    sa.Column("job", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("run_config", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("origin", sa.JSON, nullable=False),
    sa.Column("run_key", sa.String),
    sa.Column("parent_run_id", sa.String),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", _Time, nullable=False),
    sa.Column("start_time", _Time),
    sa.Column("started_at", _Time),
    sa.Column("ended_at", _Time),
    sa.Column("pid", sa.Integer),
    sa.Column("exit_code", sa.Integer),
    sa.Column("signal", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.Column("end_seq", sa.Integer, unique=True),
    sa.Column("updated_at", _Time, nullable=False),
    # Newest first with keyset paging: (created_at, run_id) < (c, r) ORDER BY both DESC.
    sa.Index("ix_runs_created", "created_at", "run_id"),
    # Filtered pages come out of these in order too (no sort of every matching run).
    sa.Index("ix_runs_status", "status", "created_at", "run_id"),
    sa.Index("ix_runs_location_job", "location", "job", "created_at", "run_id"),
    # Retention: final runs (status IN ...) that ended before a time, as a range per status.
    sa.Index("ix_runs_status_ended", "status", "ended_at"),
)
# The UNIQUE on end_seq is its index (run status sensors read runs in end_seq order).

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "run_id",
        sa.String,
        sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("time", _Time, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Index("ix_run_events_run", "run_id", "event_id"),
    sqlite_autoincrement=True,
)

run_logs = sa.Table(
    "run_logs",
    metadata,
    sa.Column(
        "run_id",
        sa.String,
        sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("time", _Time, nullable=False),
    sa.Column("stream", sa.String, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("level", sa.String),
    # The primary key is the (run_id, seq) index; on SQLite the table is clustered on it
    # (WITHOUT ROWID), so one run's lines are read from neighbouring pages.
    sa.PrimaryKeyConstraint("run_id", "seq", name="pk_run_logs"),
    sqlite_with_rowid=False,
)

# A run_key once used by an instigator stays used: these rows outlive their runs
# (no foreign key, never pruned).
run_keys = sa.Table(
    "run_keys",
    metadata,
    sa.Column("location", sa.String, nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("run_key", sa.String, nullable=False),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("created_at", _Time, nullable=False),
    sa.PrimaryKeyConstraint("location", "name", "kind", "run_key", name="uq_run_keys"),
    sqlite_with_rowid=False,
)

instigators = sa.Table(
    "instigators",
    metadata,
    sa.Column("location", sa.String, nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("status", sa.String),
    sa.Column("cursor", sa.Text),
    sa.Column("last_run_key", sa.String),
    sa.Column("last_tick_time", _Time),
    sa.Column("updated_at", _Time, nullable=False),
    sa.PrimaryKeyConstraint("location", "name", "kind", name="pk_instigators"),
)

ticks = sa.Table(
    "ticks",
    metadata,
    sa.Column("tick_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("location", sa.String, nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("tick_time", _Time, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("started_at", _Time, nullable=False),
    sa.Column("ended_at", _Time),
    sa.Column("skip_reason", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("cursor", sa.Text),
    sa.Column("run_ids", sa.JSON, nullable=False),
    sa.Column("run_keys", sa.JSON, nullable=False),
    sa.Column("run_keys_skipped", sa.JSON, nullable=False),
    # One instigator's recent ticks. name and kind lead so that the query without a
    # location ("any location", `wsm sensor ticks NAME`) also uses it.
    sa.Index("ix_ticks_instigator", "name", "kind", "location", "tick_id"),
    # Retention deletes by time.
    sa.Index("ix_ticks_time", "tick_time"),
    # tick_id is never reused (AUTOINCREMENT), even after every tick was pruned: a run's
    # origin names its tick by id.
    sqlite_autoincrement=True,
)

# Increasing counters that survive the deletion of the rows they numbered (end_seq).
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", _Time, nullable=False),
)

END_SEQ = "end_seq"

_V1_TABLES = [runs, run_events, run_logs, run_keys, instigators, ticks, counters]


def _v1(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=_V1_TABLES, checkfirst=False)
    conn.execute(counters.insert().values(name=END_SEQ, value=0))


#: (version, step): step takes the database from version-1 to version.
MIGRATIONS: List[Tuple[int, Callable[[sa.Connection], None]]] = [
    (1, _v1),
]
CURRENT_VERSION = MIGRATIONS[-1][0]


def current_version(conn: sa.Connection) -> int:
    """The database's schema version: 0 for an empty database (no tables). Raises
    StorageError for a database that has tables but none of ours (not a wsm database)."""
    inspector = sa.inspect(conn)
    names = set(inspector.get_table_names())
    if schema_version.name not in names:
        if names:
            raise StorageError(
                f"not a wsm run database (it has tables {', '.join(sorted(names)[:5])}"
                " but no schema_version)"
            )
        return 0
    version = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    return int(version or 0)


def migrate(conn: sa.Connection, where: str) -> Tuple[int, int]:
    """Bring the database on `conn` to CURRENT_VERSION; the caller holds one write
    transaction around this call (all steps or none are kept). `where` names the database
    in messages. Returns (version found, version now).

    Raises SchemaTooNew when the database's version is above CURRENT_VERSION."""
    found = current_version(conn)
    if found > CURRENT_VERSION:
        raise SchemaTooNew(
            f"{where} has schema version {found}, newer than this wsm's {CURRENT_VERSION}:"
            " use the wsm that wrote it (or a newer one)"
        )
    if found == 0:
        schema_version.create(conn, checkfirst=True)
    for version, step in MIGRATIONS:
        if version > found:
            step(conn)
            conn.execute(schema_version.insert().values(version=version, applied_at=time.time()))
    return found, CURRENT_VERSION

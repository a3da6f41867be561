"""The tables of the run database (SQL for the standard library's `sqlite3`) and their
versioned migrations.

The schema has a version, kept in `schema_version` (one row per migration applied, so the
history is in the database). `MIGRATIONS` is the ordered list of steps; step N takes a
database at version N-1 to version N. `migrate()` applies the missing steps in the
caller's one write transaction, so a `kill -9` in the middle leaves the database at its old
version, and refuses a database whose version is above `CURRENT_VERSION` (a newer wsm wrote
it).

Rule for later versions: a step never changes. Version 1 is `V1` below, frozen; version 2
gets its own `V2` list of statements (ALTER TABLE, a copy into a new table, ...) and its
entry in MIGRATIONS. The statements are run one by one with `execute` (never
`executescript`, which commits first and would break the one transaction).

The DDL is, statement for statement, what version 1 has created since the first wsm that
kept runs, so every database written so far is a version 1 as it is. Column types are SQLite's names with
the affinity they need: VARCHAR/TEXT (text), INTEGER, DOUBLE (real: times are Unix seconds,
float, UTC, as in records.py), JSON (text holding `json.dumps`).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Callable, List, Sequence, Tuple

from .base import SchemaTooNew, StorageError

END_SEQ = "end_seq"

#: Version 1: every table and index. Never edit: add a step instead.
V1: Tuple[str, ...] = (
    """CREATE TABLE runs (
        run_id VARCHAR NOT NULL,
        location VARCHAR NOT NULL,
        repository VARCHAR,
        job VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        run_config JSON NOT NULL,
        tags JSON NOT NULL,
        origin JSON NOT NULL,
        run_key VARCHAR,
        parent_run_id VARCHAR,
        attempt INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        created_at DOUBLE NOT NULL,
        start_time DOUBLE,
        started_at DOUBLE,
        ended_at DOUBLE,
        pid INTEGER,
        exit_code INTEGER,
        signal INTEGER,
        error TEXT,
        traceback TEXT,
        end_seq INTEGER,
        updated_at DOUBLE NOT NULL,
        PRIMARY KEY (run_id),
        UNIQUE (end_seq)
    )""",
    # The UNIQUE on end_seq is its index (run status sensors read runs in end_seq order).
    # Newest first with keyset paging: (created_at, run_id) < (c, r) ORDER BY both DESC.
    "CREATE INDEX ix_runs_created ON runs (created_at, run_id)",
    # Filtered pages come out of these in order too (no sort of every matching run).
    "CREATE INDEX ix_runs_status ON runs (status, created_at, run_id)",
    "CREATE INDEX ix_runs_location_job ON runs (location, job, created_at, run_id)",
    # Retention: final runs (status IN ...) that ended before a time, as a range per status.
    "CREATE INDEX ix_runs_status_ended ON runs (status, ended_at)",
    """CREATE TABLE run_events (
        event_id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        run_id VARCHAR NOT NULL,
        time DOUBLE NOT NULL,
        status VARCHAR NOT NULL,
        message TEXT NOT NULL,
        FOREIGN KEY(run_id) REFERENCES runs (run_id) ON DELETE CASCADE
    )""",
    "CREATE INDEX ix_run_events_run ON run_events (run_id, event_id)",
    # The primary key is the (run_id, seq) index, and the table is clustered on it
    # (WITHOUT ROWID), so one run's lines are read from neighbouring pages.
    """CREATE TABLE run_logs (
        run_id VARCHAR NOT NULL,
        seq INTEGER NOT NULL,
        time DOUBLE NOT NULL,
        stream VARCHAR NOT NULL,
        text TEXT NOT NULL,
        level VARCHAR,
        CONSTRAINT pk_run_logs PRIMARY KEY (run_id, seq),
        FOREIGN KEY(run_id) REFERENCES runs (run_id) ON DELETE CASCADE
    ) WITHOUT ROWID""",
    # A run_key once used by an instigator stays used: these rows outlive their runs
    # (no foreign key, never pruned).
    """CREATE TABLE run_keys (
        location VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        run_key VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        created_at DOUBLE NOT NULL,
        CONSTRAINT uq_run_keys PRIMARY KEY (location, name, kind, run_key)
    ) WITHOUT ROWID""",
    """CREATE TABLE instigators (
        location VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        status VARCHAR,
        cursor TEXT,
        last_run_key VARCHAR,
        last_tick_time DOUBLE,
        updated_at DOUBLE NOT NULL,
        CONSTRAINT pk_instigators PRIMARY KEY (location, name, kind)
    )""",
    # tick_id is never reused (AUTOINCREMENT), even after every tick was pruned: a run's
    # origin names its tick by id.
    """CREATE TABLE ticks (
        tick_id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        location VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        tick_time DOUBLE NOT NULL,
        status VARCHAR NOT NULL,
        started_at DOUBLE NOT NULL,
        ended_at DOUBLE,
        skip_reason TEXT,
        error TEXT,
        cursor TEXT,
        run_ids JSON NOT NULL,
        run_keys JSON NOT NULL,
        run_keys_skipped JSON NOT NULL
    )""",
    # One instigator's recent ticks. name and kind lead so that the query without a
    # location ("any location", `wsm sensor ticks NAME`) also uses it.
    "CREATE INDEX ix_ticks_instigator ON ticks (name, kind, location, tick_id)",
    # Retention deletes by time.
    "CREATE INDEX ix_ticks_time ON ticks (tick_time)",
    # Increasing counters that survive the deletion of the rows they numbered (end_seq).
    """CREATE TABLE counters (
        name VARCHAR NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (name)
    )""",
    f"INSERT INTO counters (name, value) VALUES ('{END_SEQ}', 0)",
)

_SCHEMA_VERSION = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL,
    applied_at DOUBLE NOT NULL,
    PRIMARY KEY (version)
)"""


def run_statements(conn: sqlite3.Connection, statements: Sequence[str]) -> None:
    """Execute `statements` one by one on `conn`, inside the caller's transaction."""
    for statement in statements:
        conn.execute(statement)


def _v1(conn: sqlite3.Connection) -> None:
    run_statements(conn, V1)


#: (version, step): step takes the database from version-1 to version, on a connection
#: inside the write transaction.
MIGRATIONS: List[Tuple[int, Callable[[sqlite3.Connection], None]]] = [
    (1, _v1),
]
CURRENT_VERSION = MIGRATIONS[-1][0]


def current_version(conn: sqlite3.Connection) -> int:
    """The database's schema version: 0 for an empty database (no tables). Raises
    StorageError for a database that has tables but none of ours (not a wsm database).
    Raises sqlite3.Error as the driver does (e.g. a file that is not a database)."""
    names = {
        row[0]
        for row in conn.execute(
            # SQLite's own tables (sqlite_sequence, ...) are not the user's.
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
    }
    if "schema_version" not in names:
        if names:
            raise StorageError(
                f"not a wsm run database (it has tables {', '.join(sorted(names)[:5])}"
                " but no schema_version)"
            )
        return 0
    version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    return int(version or 0)


def migrate(conn: sqlite3.Connection, where: str) -> Tuple[int, int]:
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
        conn.execute(_SCHEMA_VERSION)
    for version, step in MIGRATIONS:
        if version > found:
            step(conn)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
    return found, CURRENT_VERSION

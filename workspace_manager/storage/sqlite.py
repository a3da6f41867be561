"""The embedded default backend: one SQLite file, in WAL mode, through SQLAlchemy Core.

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
  both pass the check. Read transactions are plain `BEGIN` (a snapshot).
- The file is made 0600 in a 0700 folder (SPEC section 6); SQLite gives its -wal and -shm
  files the database file's mode.

Thread-safe: SQLAlchemy's pool gives each thread its own connection for the length of a
transaction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, List, Union

import sqlalchemy as sa

from ..private_files import open_private, private_dir
from . import schema
from .base import StorageError
from .sql import SqlStorage

BUSY_TIMEOUT_MS = 5000


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _make_engine(path: Path) -> sa.Engine:
    engine = sa.create_engine(
        sa.URL.create("sqlite", database=str(path)),
        json_serializer=_json_dumps,
        pool_size=8,
        max_overflow=8,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver must not open transactions on its own: `_on_begin` does, so that a
        # write transaction can be BEGIN IMMEDIATE (SQLAlchemy's documented pysqlite recipe).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"{path}: SQLite would not use WAL mode (it uses {mode})")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("wsm_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


class SqliteStorage(SqlStorage):
    """`Storage` in the SQLite file `path`.

    `create=True` makes the file (0600) and its folder (0700) when missing; with
    `create=False` a missing file raises StorageError. Opening brings the schema up to date
    (schema.migrate) and raises SchemaTooNew for a database from a newer wsm, StorageError
    for a file that is not a wsm database."""

    _write_options = {"wsm_write": True}

    def __init__(self, path: Union[str, os.PathLike[str]], *, create: bool = True) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise StorageError(f"no run database at {self.path}")
            try:
                private_dir(self.path.parent)
                os.close(open_private(self.path, os.O_RDWR))
            except OSError as exc:
                raise StorageError(f"cannot create {self.path}: {exc.strerror}") from exc
        super().__init__(_make_engine(self.path), str(self.path))
        try:
            # A read first: the CLI opening an up-to-date database never takes the write
            # lock (never waits behind the manager's writes); migrate() checks again under it.
            with self._read() as conn:
                found = schema.current_version(conn)
            if found != schema.CURRENT_VERSION:
                with self._write() as conn:
                    schema.migrate(conn, str(self.path))
        except BaseException:
            self._engine.dispose()
            raise

    def integrity_problems(self) -> List[str]:
        """`PRAGMA integrity_check`: [] when it says ok, else its lines."""
        with self._read() as conn:
            lines = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA integrity_check")]
        return [] if lines == ["ok"] else lines

"""The queries and tables of storage/sql.py and storage/schema.py are portable Core: they
compile for PostgreSQL as they are (a server backend is a new engine, not new queries).
Only compiled here; running them on a server is that backend's own test suite."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from workspace_manager.storage import schema, sql

PG = postgresql.dialect()


def test_every_table_and_index_compiles_for_postgresql() -> None:
    for table in schema.metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=PG))
        assert "WITHOUT ROWID" not in ddl and "AUTOINCREMENT" not in ddl, ddl
        for index in table.indexes:
            str(CreateIndex(index).compile(dialect=PG))
    # The JSON columns are JSON there, the times double precision.
    runs = str(CreateTable(schema.runs).compile(dialect=PG))
    assert "run_config JSON" in runs and "created_at DOUBLE PRECISION" in runs


def test_the_module_statements_compile_for_postgresql() -> None:
    statements = [value for name, value in vars(sql).items() if isinstance(value, sa.Executable)]
    assert len(statements) > 15
    for statement in statements:
        str(statement.compile(dialect=PG))
    c = schema.runs.c
    keyset = sql._RUNS.where(
        sa.tuple_(c.created_at, c.run_id) < sa.tuple_(sa.literal(1.0), sa.literal("x"))
    )
    assert "(runs.created_at, runs.run_id) <" in str(keyset.compile(dialect=PG))

"""Where a manager's run database lives, and opening it."""

from __future__ import annotations

from pathlib import Path

from ..supervisor.logs import state_root
from .base import Storage, StorageError

DATABASE_NAME = "runs.db"


def database_path(key: str) -> Path:
    """``<state root>/<key>/runs.db``: the state root is `supervisor.logs.state_root()`
    (``$WSM_STATE_DIR``, ``$XDG_STATE_HOME/wsm`` or ``~/.local/state/wsm``), `key` the
    manager's key (one per workspace), as for its log folder."""
    return state_root() / key / DATABASE_NAME


def open_storage(key: str, create: bool = True) -> Storage:
    """The storage of manager `key` (SQLite, storage/sqlite.py). With `create=False` (the
    CLI reading runs) a missing database raises StorageError with one line saying so.
    Raises SchemaTooNew for a database of a newer wsm, StorageError for one it cannot use."""
    from .sqlite import SqliteStorage

    path = database_path(key)
    if not create and not path.exists():
        raise StorageError(f"no runs recorded yet for this workspace ({path} does not exist)")
    return SqliteStorage(path, create=create)

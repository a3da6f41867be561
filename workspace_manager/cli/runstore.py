"""The CLI's way to the run database of the workspace named by `-w/-f/-m`, and the small
formatting helpers the run, schedule and sensor commands share.

`wsm run list|show|logs` and `wsm schedule|sensor ticks` read the database directly
(docs/daemon.md): they work with no manager running, and never wait on one. The database
belongs to the manager key of the target (`cli.targets.identity`), as the location logs of
`wsm logs` do; with no explicit target, the only running manager's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from workspace_manager.cli import targets

# typing for the type checkers only (they take any name TYPE_CHECKING as true): `wsm
# status` imports this module, and typing costs ~5 ms of its start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence

#: Exit statuses of the run, schedule and sensor commands (SPEC section 3 / 7).
EXIT_NOT_FOUND = 1  # unknown run id or name, ambiguous prefix, a refused change
EXIT_USAGE = 2
EXIT_NO_MANAGER = 3


def open_storage(args: argparse.Namespace) -> Any:
    """The `Storage` of the target's run database; exits with one line when there is none
    yet (`wsm up` creates it) or when it cannot be read."""
    from workspace_manager.storage import paths as storage_paths
    from workspace_manager.storage.base import StorageError
    from workspace_manager.supervisor.runtime import manager_key

    try:
        key = manager_key(targets.identity(args))
    except targets.UsageError as exc:
        targets.fail(str(exc), EXIT_USAGE)
    path = storage_paths.database_path(key)
    if not path.exists():
        record = targets.find_running(args)
        if record is not None:
            key, path = record.key, storage_paths.database_path(record.key)
    if not path.exists():
        fail_if_missing(args)
        targets.fail(
            f"no runs recorded for {targets.describe(args)} yet (no database at {path}; "
            "`wsm up` creates it)",
            EXIT_NOT_FOUND,
        )
    try:
        return storage_paths.open_storage(key, create=False)
    except (StorageError, OSError) as exc:
        targets.fail(f"cannot read the run database {path}: {exc}", EXIT_NOT_FOUND)


def missing_file(args: argparse.Namespace) -> Optional[str]:
    """The workspace file (`-w`, default ./workspace.yaml) or Python file (`-f`) the
    arguments name when it does not exist, else None (a module, `-m`, is never checked:
    only its interpreter can find it)."""
    if args.module_name:
        return None
    path = args.python_file or args.workspace or targets.DEFAULT_WORKSPACE
    return None if os.path.exists(path) else str(path)


def fail_if_missing(args: argparse.Namespace) -> None:
    """Exit 1 with `wsm: FILE: no such file` when the file the arguments name does not
    exist: the reason there are no records for it, rather than "no runs recorded". Called
    once neither a database nor a running manager was found, so the records of a file
    since removed are still read."""
    path = missing_file(args)
    if path is not None:
        targets.fail(f"{path}: no such file", EXIT_NOT_FOUND)


def control_call(args: argparse.Namespace, method: str, params: dict) -> Any:
    """A control-socket call to the running manager; exit 3 when none runs, and one line
    (exit 1) when it refuses."""
    from workspace_manager.cli import control_client
    from workspace_manager.protocol.errors import RemoteError

    try:
        return control_client.call(args, method, params, timeout=30.0)
    except RemoteError as exc:
        if exc.type == "MethodNotFound":
            targets.fail(
                f"the running manager does not know {method!r}: it is older than this wsm",
                EXIT_NOT_FOUND,
            )
        targets.fail(exc.message, EXIT_NOT_FOUND)
    except (ConnectionError, OSError) as exc:
        targets.fail(f"lost the connection to the manager: {exc}", EXIT_NO_MANAGER)


def when(at: Optional[float], precise: bool = False) -> str:
    """A moment in local time: `2024-05-01 12:03:04` (`.123` when precise); `-` if unknown."""
    if at is None:
        return "-"
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    return f"{text}.{int(at * 1000) % 1000:03d}" if precise else text


def clock_ms(at: float) -> str:
    """`12:03:04.123`, local time: the time column of log lines."""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def seconds_text(value: Optional[float]) -> str:
    """`0.42s`, `12.3s`, `4m05s`, `2h07m`; `-` if unknown."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    s = int(value)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def one_line(text: Any, limit: int = 80) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], shrink: Sequence[int] = ()) -> str:
    """Columns that line up (cli/table.py): left-aligned, two spaces apart, the last one not
    padded; on a terminal, the `shrink` columns and the last give way so no row wraps."""
    from workspace_manager.cli.table import render, terminal_width

    return render(headers, rows, columns=terminal_width(sys.stdout), shrink=shrink)

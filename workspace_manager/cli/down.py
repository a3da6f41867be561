"""`wsm down`: ask the running manager to shut down, and wait until it has."""

from __future__ import annotations

import argparse
import time

from workspace_manager.cli import control_client, targets


def add_parser(sub) -> None:
    p = sub.add_parser("down", help="gracefully shut down the running manager")
    targets.add_target_args(p, code=False)
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the manager to exit (default 60)",
    )


def run(args: argparse.Namespace) -> int:
    client, record = control_client.connect(args)
    if client is None:
        print(f"wsm: {control_client.no_manager_message(args)}")
        return 0
    with client:
        client.call("shutdown", {})
    deadline = time.monotonic() + args.timeout
    while _running(record.pid):
        if time.monotonic() > deadline:
            targets.fail(f"manager pid {record.pid} did not exit within {args.timeout:g}s", 1)
        time.sleep(0.05)
    print(f"wsm: manager pid {record.pid} stopped")
    queued = _queued_runs(record.key)
    if queued:
        print(
            f"wsm: {queued} queued run{' stays' if queued == 1 else 's stay'} queued: the next "
            "`wsm up` starts them (`wsm run cancel ID` drops one)"
        )
    return 0


def _queued_runs(key: str) -> int:
    """QUEUED runs in the stopped manager's run database (0 when it has none or it cannot
    be read: the stop itself went well)."""
    from workspace_manager.storage import paths as storage_paths

    if not storage_paths.database_path(key).exists():
        return 0
    try:
        store = storage_paths.open_storage(key, create=False)
    except Exception:
        return 0
    try:
        return int(store.run_counts().get("QUEUED", 0))
    except Exception:
        return 0
    finally:
        store.close()


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited manager stays a zombie until its parent reaps it)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

"""`wsm down`: ask the running manager to shut down, and wait until it has."""

from __future__ import annotations

import argparse

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
    import psutil

    client, record = control_client.connect(args)
    if client is None:
        print(f"wsm: no manager is running for {targets.describe(args)}")
        return 0
    with client:
        client.call("shutdown", {})
    try:
        psutil.Process(record.pid).wait(timeout=args.timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        targets.fail(f"manager pid {record.pid} did not exit within {args.timeout:g}s", 1)
    print(f"wsm: manager pid {record.pid} stopped")
    return 0

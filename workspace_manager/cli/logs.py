"""`wsm logs LOCATION [-F]`: a location's captured stdout/stderr, from its log file."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO, Optional

from workspace_manager.cli import targets


def add_parser(sub) -> None:
    p = sub.add_parser("logs", help="a location's captured stdout/stderr")
    targets.add_target_args(p, code=False, short_file=False)
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("-F", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument(
        "-n",
        "--lines",
        type=int,
        default=200,
        metavar="N",
        help="how many of the last lines to print first (default 200; 0: all)",
    )


def run(args: argparse.Namespace) -> int:
    from workspace_manager.supervisor.logs import log_path
    from workspace_manager.supervisor.runtime import manager_key
    from workspace_manager.workspace.names import name_problem

    unsafe = name_problem(args.location)
    if unsafe is not None:
        targets.fail(f"no location can be named {args.location!r}: a location name {unsafe}")

    try:
        ident = targets.identity(args)
    except targets.UsageError as exc:
        targets.fail(str(exc))
    path = log_path(manager_key(ident), args.location)
    if not path.exists():
        record = targets.find_running(args)
        if record is not None:
            path = log_path(record.key, args.location)
    if not path.exists():
        targets.fail(
            f"no log for location {args.location!r} of {targets.describe(args)} (looked in {path})",
            1,
        )
    out = sys.stdout.buffer
    with open(path, "rb") as f:
        _write_tail(f, out, args.lines)
        if args.follow:
            _follow(path, f, out)
    return 0


def _write_tail(f: BinaryIO, out: BinaryIO, lines: int) -> None:
    data = f.read()
    if lines > 0:
        data = b"\n".join(data.split(b"\n")[-lines - 1 :])
    out.write(data)
    out.flush()


def _follow(path: Path, f: BinaryIO, out: BinaryIO) -> None:
    """Like `tail -F`: keeps going across rotation (the file is replaced by a new one)."""
    inode = os.fstat(f.fileno()).st_ino
    current: Optional[BinaryIO] = f
    try:
        while True:
            assert current is not None
            chunk = current.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            try:
                if os.stat(path).st_ino != inode:
                    current.close()
                    current = open(path, "rb")
                    inode = os.fstat(current.fileno()).st_ino
                    continue
            except FileNotFoundError:
                pass
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if current is not None:
            current.close()

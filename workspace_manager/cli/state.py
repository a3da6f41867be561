"""`wsm state prune`: remove the state folders (logs) of workspaces and files that are gone."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "state",
        help="the state folders (location logs) of every workspace",
        description="Each workspace or `-f`/`-m` target has a state folder (its locations' "
        "logs). `wsm up` prunes the ones older than 7 days whose workspace or file no longer "
        "exists; `wsm state prune` does it now. A folder a running manager holds is never "
        "removed.",
    )
    sub2 = p.add_subparsers(dest="state_command", metavar="COMMAND")
    sub2.required = True
    prune = sub2.add_parser("prune", help="remove the state folders of targets that are gone")
    prune.add_argument(
        "--older-than",
        type=float,
        default=None,
        metavar="DAYS",
        help="only folders unchanged for this many days (default 7; 0: any age)",
    )
    prune.add_argument(
        "--include-unknown",
        action="store_true",
        help="also folders that do not say what they belong to (made by an older wsm)",
    )
    prune.add_argument("--dry-run", action="store_true", help="only say what would go")


def run(args: argparse.Namespace) -> int:
    from workspace_manager.supervisor import runtime, statedirs
    from workspace_manager.supervisor.logs import state_root

    if args.older_than is not None and args.older_than < 0:
        print("wsm: --older-than must be 0 or more days", file=sys.stderr)
        return 2
    older_than = (
        statedirs.DEFAULT_OLDER_THAN if args.older_than is None else args.older_than * 86400
    )
    removed = statedirs.prune(
        older_than, dry_run=args.dry_run, include_unknown=args.include_unknown
    )
    verb = "would remove" if args.dry_run else "removed"
    for sd in removed:
        target = runtime.identity_target(sd.identity) if sd.identity else {}
        print(f"{verb} {sd.path}  ({_describe(target)})")
    print(f"{verb} {len(removed)} state folder{'' if len(removed) == 1 else 's'} in {state_root()}")
    return 0


def _describe(target: dict) -> str:
    if not target:
        return "made by an older wsm: its target is unknown"
    if "list" in target:
        return "a `wsm list` run"
    for key in ("workspace", "python_file", "working_directory"):
        if target.get(key):
            return f"{key.replace('_', ' ')} {target[key]} is gone"
    return "unknown target"

"""`wsm reload [LOCATION...]`: re-read workspace.yaml in the running manager."""

from __future__ import annotations

import argparse
import sys

from workspace_manager.cli import control_client, targets


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reload",
        help="re-read workspace.yaml; restart changed or named locations only",
        description="Re-read the workspace in the running manager: start new locations, stop "
        "removed ones, restart the ones whose config or Python code changed and the ones named; "
        "the others keep serving. A restarted ready location keeps answering until its new "
        "process is ready, and goes on answering if that process fails to load. Waits for "
        "the restarted and new locations to load; exit 1 if one did not.",
    )
    targets.add_target_args(p, code=False)
    p.add_argument("locations", nargs="*", metavar="LOCATION", help="also restart these")


def run(args: argparse.Namespace) -> int:
    from workspace_manager.cli.runstore import one_line  # the console's form, not its import
    from workspace_manager.protocol.errors import RemoteError

    try:
        result = control_client.call(args, "reload", {"locations": args.locations}, timeout=600)
    except RemoteError as exc:
        targets.fail(f"reload refused: {exc.message}", 2)
    for key in ("started", "stopped", "restarted", "unchanged"):
        if result.get(key):
            print(f"{key:<10} {', '.join(result[key])}")
    failed = result.get("failed") or {}
    for name, why in failed.items():
        print(
            f"wsm: {name}: its new process failed to load, still serving the previous one: "
            f"{one_line(why, 300)} (see `wsm logs {name}`)",
            file=sys.stderr,
        )
    broken = result.get("broken") or {}
    for name, why in broken.items():
        print(
            f"wsm: {name}: failed to load: {one_line(why, 300)} (see `wsm logs {name}`)",
            file=sys.stderr,
        )
    return 1 if failed or broken else 0

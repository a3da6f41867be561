"""`wsm schedule list|start|stop|ticks` and `wsm sensor list|start|stop|ticks` (SPEC section 7).

`list`, `start` and `stop` ask the running manager (control socket `instigators` and
`set_instigator_status`): only it knows the definitions its locations loaded and their
state. `ticks` reads the run database, with or without a manager. NAME is a schedule's or
sensor's name, or LOCATION:NAME when two locations use it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List

from workspace_manager.cli import runstore, targets

KINDS = ("schedule", "sensor")


def add_kind_parser(sub, kind: str) -> None:
    """The `wsm schedule` or `wsm sensor` command (cli/schedule.py, cli/sensor.py)."""
    p = sub.add_parser(
        kind,
        help=f"{kind}s: list, start, stop, ticks",
        description=f"The {kind}s of the running manager's locations. NAME is the {kind}'s "
        "name, or LOCATION:NAME when two locations use it.",
    )
    p.set_defaults(kind=kind)
    sub2 = p.add_subparsers(dest="instigator_command", metavar="COMMAND")
    sub2.required = True
    ls = sub2.add_parser("list", help=f"every {kind}: status, {_when_word(kind)}, last tick")
    targets.add_target_args(ls, code=False)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    for verb in ("start", "stop"):
        v = sub2.add_parser(verb, help=f"{verb} a {kind} (kept across restarts)")
        targets.add_target_args(v, code=False)
        v.add_argument("name", metavar="NAME")
        v.add_argument("--json", action="store_true", help="machine-readable output")
    ticks = sub2.add_parser("ticks", help=f"a {kind}'s recent ticks, newest first")
    targets.add_target_args(ticks, code=False)
    ticks.add_argument("name", metavar="NAME")
    ticks.add_argument(
        "--limit", "-n", type=int, default=20, metavar="N", help="at most N ticks (default 20)"
    )
    ticks.add_argument("--json", action="store_true", help="machine-readable output")


def _when_word(kind: str) -> str:
    return "cron and next tick" if kind == "schedule" else "interval"


def run(args: argparse.Namespace) -> int:
    command = {"list": do_list, "start": do_set, "stop": do_set, "ticks": do_ticks}
    return command[args.instigator_command](args)


def do_list(args: argparse.Namespace) -> int:
    items: List[Dict[str, Any]] = runstore.control_call(args, "instigators", {"kind": args.kind})
    if args.json:
        json.dump(items, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not items:
        print(f"no {args.kind}s (or the manager runs with --no-daemon)")
        return 0
    sys.stdout.write(render_list(args.kind, items))
    return 0


def render_list(kind: str, items: List[Dict[str, Any]]) -> str:
    """NAME, LOCATION, STATUS, the cron (with its time zone) or interval, the next tick
    (schedules), the last tick and its result."""
    rows = []
    for item in items:
        last = item.get("last_tick") or {}
        if kind == "schedule":
            tz = item.get("execution_timezone")
            when = str(item.get("cron_schedule") or "-") + (
                f" ({tz})" if tz and tz != "UTC" else ""
            )
        else:
            interval = item.get("minimum_interval_seconds")
            when = f"every {interval:g}s" if isinstance(interval, (int, float)) else "-"
            if item.get("sensor_type") == "run_status":
                when += " (run status)"
        row = [
            str(item.get("name")),
            str(item.get("location")),
            str(item.get("status") or "-"),
            when,
        ]
        if kind == "schedule":
            row.append(runstore.when(item.get("next_tick")))
        row.append(runstore.when(last.get("tick_time") or last.get("started_at")))
        row.append(tick_result(last) if last else "-")
        rows.append(row)
    headers = ["NAME", "LOCATION", "STATUS", "CRON" if kind == "schedule" else "INTERVAL"]
    if kind == "schedule":
        headers.append("NEXT TICK")
    headers += ["LAST TICK", "RESULT"]
    # name and location give way on a narrow terminal, and a sensor's interval words; a
    # schedule's cron never (cut, it would read as another schedule)
    return runstore.table(headers, rows, shrink=(0, 1) if kind == "schedule" else (0, 1, 3))


def tick_result(tick: Dict[str, Any]) -> str:
    """`success: 2 runs`, `skipped: nothing new`, `failure: ValueError: boom`."""
    status = str(tick.get("status") or "?")
    runs = tick.get("run_ids") or []
    if status == "skipped":
        detail = tick.get("skip_reason") or ""
        dupes = tick.get("run_keys_skipped") or []
        if dupes and not detail:
            detail = f"{len(dupes)} run key(s) used before"
    elif status == "failure":  # its first line: the traceback follows it (`--json`)
        detail = (str(tick.get("error") or "").strip().splitlines() or [""])[0]
    else:
        detail = f"{len(runs)} run{'' if len(runs) == 1 else 's'}" if status == "success" else ""
    return f"{status}: {runstore.one_line(detail, 60)}" if detail else status


def do_set(args: argparse.Namespace) -> int:
    status = "RUNNING" if args.instigator_command == "start" else "STOPPED"
    result = runstore.control_call(
        args, "set_instigator_status", {"kind": args.kind, "name": args.name, "status": status}
    )
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    item = result if isinstance(result, dict) else {}
    name = f"{item.get('location')}:{item.get('name')}" if item.get("location") else args.name
    print(f"{args.kind} {name}: {item.get('status') or status}")
    return 0


#: `ticks` of a name no location defines, nor the records know
EXIT_UNKNOWN = 1


def _defined(args: argparse.Namespace, location: str, name: str) -> bool:
    """Whether the running manager's locations define it; without a manager, nothing says
    so (a name that never ticked nor was started or stopped is unknown)."""
    if targets.find_running(args) is None:
        return False
    items = runstore.control_call(args, "instigators", {"kind": args.kind}) or []
    return any(
        i.get("name") == name and (not location or i.get("location") == location) for i in items
    )


def do_ticks(args: argparse.Namespace) -> int:
    if args.limit < 1:
        targets.fail("--limit must be at least 1", runstore.EXIT_USAGE)
    location, _, name = args.name.rpartition(":")
    store = runstore.open_storage(args)
    try:
        ticks = store.list_ticks(location or None, name, args.kind, args.limit)
        kept = [
            s
            for s in store.list_instigators(args.kind)
            if s.name == name and (not location or s.location == location)
        ]
    finally:
        store.close()
    if not ticks and not kept and not _defined(args, location, name):
        targets.fail(f"no {args.kind} named {args.name!r}", EXIT_UNKNOWN)
    if args.json:
        json.dump([t.as_dict() for t in ticks], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not ticks:
        print(f"no ticks recorded for {args.kind} {args.name}")
        return 0
    rows = [
        (
            runstore.when(t.tick_time),
            t.location,
            tick_result(t.as_dict()),
            " ".join(r[:12] for r in t.run_ids) or "-",
        )
        for t in ticks
    ]
    sys.stdout.write(runstore.table(("TICK", "LOCATION", "RESULT", "RUNS"), rows, shrink=(1, 2)))
    return 0

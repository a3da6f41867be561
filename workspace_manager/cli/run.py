"""`wsm run list|show|logs|cancel`: the runs of a workspace (SPEC section 7).

`list`, `show` and `logs` read the run database directly (cli/runstore.py), so they work
whether or not a manager runs; `cancel` asks the running manager (control socket
`cancel_run`), which stops the run's whole process tree. An ID may be any unique prefix of
a run's id (at least 4 characters).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any, Dict, List, Optional

from workspace_manager.cli import runstore, targets

#: How often `logs --follow` looks for new lines (seconds).
FOLLOW_POLL = 0.2
#: How often `logs --follow` checks that a manager still runs (seconds).
MANAGER_CHECK = 2.0
#: Lines read per query while printing logs.
LOG_PAGE = 1000


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="runs: list, show, logs, cancel",
        description="The runs of the workspace, newest first; ID may be a unique prefix of a "
        "run's id. list/show/logs read the run database and work without a manager; cancel "
        "asks the running manager.",
    )
    sub2 = p.add_subparsers(dest="run_command", metavar="COMMAND")
    sub2.required = True

    ls = sub2.add_parser("list", help="runs, newest first")
    targets.add_target_args(ls, code=False)
    ls.add_argument(
        "--status",
        action="append",
        metavar="S",
        help="only runs in status S (repeat it, or S1,S2; e.g. FAILURE)",
    )
    ls.add_argument("--location", "-l", metavar="L", help="only runs of location L")
    ls.add_argument("--job", "-j", metavar="J", help="only runs of job J")
    ls.add_argument(
        "--limit", "-n", type=int, default=20, metavar="N", help="at most N runs (default 20)"
    )
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    show = sub2.add_parser("show", help="one run: status history, origin, times, error")
    targets.add_target_args(show, code=False)
    show.add_argument("run_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="machine-readable output")

    logs = sub2.add_parser("logs", help="a run's stdout, stderr and log lines")
    targets.add_target_args(logs, code=False, short_file=False)  # -F is --follow here
    logs.add_argument("run_id", metavar="ID")
    logs.add_argument(
        "-F", "--follow", action="store_true", help="keep printing new lines until the run ends"
    )

    cancel = sub2.add_parser("cancel", help="cancel a queued or running run")
    targets.add_target_args(cancel, code=False)
    cancel.add_argument("run_id", metavar="ID")


def run(args: argparse.Namespace) -> int:
    command = {"list": run_list, "show": run_show, "logs": run_logs, "cancel": run_cancel}
    return command[args.run_command](args)


# -- list -------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    from workspace_manager.storage.records import RUN_STATUSES

    statuses = None
    if args.status:
        statuses = [s.strip().upper() for v in args.status for s in v.split(",") if s.strip()]
        unknown = [s for s in statuses if s not in RUN_STATUSES]
        if unknown:
            targets.fail(
                f"--status {unknown[0]}: not a run status ({', '.join(RUN_STATUSES)})",
                runstore.EXIT_USAGE,
            )
    if args.limit < 1:
        targets.fail("--limit must be at least 1", runstore.EXIT_USAGE)
    store = runstore.open_storage(args)
    try:
        runs = store.list_runs(
            statuses=statuses, location=args.location, job=args.job, limit=args.limit
        )
    finally:
        store.close()
    if args.json:
        _dump_json([r.as_dict() for r in runs])
        sys.stdout.write("\n")
        return 0
    if not runs:
        print("no runs" + (" match" if statuses or args.location or args.job else " yet"))
        return 0
    rows = [
        (
            r.run_id[:12],
            r.status,
            r.location,
            r.job,
            runstore.when(r.created_at),
            runstore.seconds_text(duration(r)),
            origin_text(r.origin, short=True),
        )
        for r in runs
    ]
    headers = ("RUN ID", "STATUS", "LOCATION", "JOB", "CREATED", "TOOK", "ORIGIN")
    sys.stdout.write(runstore.table(headers, rows, shrink=(2, 3)))  # location, job
    return 0


# -- show -------------------------------------------------------------------------------------


def run_show(args: argparse.Namespace) -> int:
    store = runstore.open_storage(args)
    try:
        run = _get(store, args.run_id)
        events = store.run_events(run.run_id)
    finally:
        store.close()
    if args.json:
        doc = run.as_dict()
        doc["events"] = [e.as_dict() for e in events]
        _dump_json(doc)
        sys.stdout.write("\n")
        return 0
    sys.stdout.write(render_run(run, events))
    return 0


def _dump_json(value: Any) -> None:
    """`--json`: strict JSON even for a record stored before NaN or Infinity in a run
    config was refused (they are given as strings, as the HTTP API does)."""
    from workspace_manager.storage.records import finite_json

    json.dump(finite_json(value), sys.stdout, indent=2, allow_nan=False)


def render_run(run: Any, events: List[Any]) -> str:
    """`wsm run show`'s text: one `field  value` line each, then the history and traceback."""
    rows: List[tuple] = [
        ("run", run.run_id),
        ("status", run.status),
        ("location", run.location + (f" (repository {run.repository})" if run.repository else "")),
        ("job", run.job),
        ("origin", origin_text(run.origin)),
        ("created", runstore.when(run.created_at, precise=True)),
        ("started", runstore.when(run.started_at or run.start_time, precise=True)),
        ("ended", runstore.when(run.ended_at, precise=True)),
        ("took", runstore.seconds_text(duration(run))),
        ("pid", str(run.pid) if run.pid is not None else "-"),
        ("exit", exit_text(run)),
    ]
    if run.attempt or run.parent_run_id:
        rows.append(("attempt", f"{run.attempt} (parent run {run.parent_run_id or '-'})"))
    if run.tags:
        rows.append(("tags", " ".join(f"{k}={v}" for k, v in sorted(run.tags.items()))))
    if run.run_config:
        # é as é for a person (--json keeps JSON's escapes)
        rows.append(("run config", json.dumps(run.run_config, sort_keys=True, ensure_ascii=False)))
    if run.error:
        rows.append(("error", run.error))
    out = [f"{name:<10}  {value}" for name, value in rows]
    out.append("history")
    for e in events:
        message = f"  {e.message}" if e.message else ""
        out.append(f"  {runstore.clock_ms(e.time)}  {e.status:<9}{message}".rstrip())
    if run.traceback:
        out.append("traceback")
        out.extend("  " + line for line in run.traceback.rstrip("\n").splitlines())
    return "\n".join(out) + "\n"


def origin_text(origin: Optional[Dict[str, Any]], short: bool = False) -> str:
    """Who launched a run, in words: `alice@box (cli)`, `schedule nightly (tick 12, for
    02:00:00)`, `sensor watch (tick 7, run_key k1)`, `retry 2 of 0f3c...`."""
    origin = origin or {}
    kind = origin.get("kind")
    if kind in ("manual", "execute"):
        if origin.get("user"):
            who = str(origin["user"]) + (f"@{origin['host']}" if origin.get("host") else "")
        else:  # through the API: no account, the peer's address
            who = str(origin.get("peer") or "?")
        via = origin.get("via") or ("execute" if kind == "execute" else None)
        return f"{who} ({via})" if via else who
    if kind in ("schedule", "sensor"):
        name = origin.get("name") or "?"
        if short:
            return f"{kind} {name}"
        details = []
        if origin.get("tick_id") is not None:
            details.append(f"tick {origin['tick_id']}")
        if origin.get("scheduled_time") is not None:
            details.append(f"for {runstore.when(origin['scheduled_time'])}")
        if origin.get("run_key") is not None:
            details.append(f"run_key {origin['run_key']}")
        return f"{kind} {name}" + (f" ({', '.join(details)})" if details else "")
    if kind == "retry":
        parent = str(origin.get("parent_run_id") or "?")
        return f"retry {origin.get('attempt', '?')} of {parent[:12] if short else parent}"
    return kind or "-"


def exit_text(run: Any) -> str:
    if run.signal is not None:
        try:
            name = signal.Signals(run.signal).name
        except ValueError:
            name = f"signal {run.signal}"
        return f"killed by {name} ({run.signal})"
    if run.exit_code is not None:
        return f"exit code {run.exit_code}"
    return "-"


def duration(run: Any) -> Optional[float]:
    start = run.start_time if run.start_time is not None else run.started_at
    if start is None:
        return None
    end = run.ended_at if run.ended_at is not None else (None if run.is_final else time.time())
    return None if end is None else max(end - start, 0.0)


# -- logs -------------------------------------------------------------------------------------


def run_logs(args: argparse.Namespace) -> int:
    store = runstore.open_storage(args)
    try:
        run = _get(store, args.run_id)
        after = _print_logs(store, run.run_id, 0)
        checked = time.monotonic()
        while args.follow:
            # read the status first: lines stored before it went final are then all there
            final = store.get_run(run.run_id).is_final
            after = _print_logs(store, run.run_id, after)
            if final:
                break
            if time.monotonic() - checked > MANAGER_CHECK:
                checked = time.monotonic()
                if targets.find_running(args) is None:
                    # no manager: nothing will write to this run until one starts again
                    # (and marks it FAILURE), so waiting would be forever
                    print(
                        f"wsm: no manager is running for {targets.describe(args)}: the run "
                        "stays unfinished until `wsm up` starts again",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(FOLLOW_POLL)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0


def _print_logs(store: Any, run_id: str, after: int) -> int:
    """Print the lines after seq `after`; return the last seq printed."""
    while True:
        lines = store.read_logs(run_id, after, LOG_PAGE)
        if not lines:
            return after
        sys.stdout.write("".join(log_line(ln) + "\n" for ln in lines))
        sys.stdout.flush()
        after = lines[-1].seq
        if len(lines) < LOG_PAGE:
            return after


def log_line(line: Any) -> str:
    """`12:03:04.123 stdout  text`; a context.log line shows its level in place of `log`."""
    label = line.level if line.stream == "log" and line.level else line.stream
    return f"{runstore.clock_ms(line.time)} {label:<7} {line.text}"


# -- cancel -----------------------------------------------------------------------------------


def run_cancel(args: argparse.Namespace) -> int:
    run_id = args.run_id
    store = runstore_open_quietly(args)  # resolve a prefix here: the manager gets a whole id
    if store is not None:
        try:
            run = _get(store, run_id)
        finally:
            store.close()
        if run.is_final:
            targets.fail(f"run {run.run_id} has already ended: {run.status}", 1)
        run_id = run.run_id
    answer = runstore.control_call(args, "cancel_run", {"run_id": run_id})
    status = answer.get("status") if isinstance(answer, dict) else None
    rid = answer.get("run_id", run_id) if isinstance(answer, dict) else run_id
    if status == "CANCELED":
        print(f"run {rid} canceled")
    else:
        print(f"run {rid} is {status or 'being canceled'}: its processes are being stopped")
    return 0


def runstore_open_quietly(args: argparse.Namespace) -> Optional[Any]:
    """The storage if the database exists (no message when it does not)."""
    from workspace_manager.storage import paths as storage_paths
    from workspace_manager.supervisor.runtime import manager_key

    try:
        key = manager_key(targets.identity(args))
    except targets.UsageError as exc:
        targets.fail(str(exc), runstore.EXIT_USAGE)
    if not storage_paths.database_path(key).exists():
        record = targets.find_running(args)
        if record is None or not storage_paths.database_path(record.key).exists():
            runstore.fail_if_missing(args)
            return None
    return runstore.open_storage(args)


def _get(store: Any, run_id: str) -> Any:
    from workspace_manager.storage.base import RunNotFound

    if len(run_id) < 4:
        targets.fail(f"{run_id!r}: give at least 4 characters of a run id", runstore.EXIT_USAGE)
    try:
        return store.get_run(run_id)
    except RunNotFound as exc:
        targets.fail(str(exc) or f"no run {run_id!r}", runstore.EXIT_NOT_FOUND)

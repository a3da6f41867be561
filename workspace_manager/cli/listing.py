"""`wsm list`: load every location once, list what it defines, stop."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
from typing import Any, Dict

from workspace_manager.cli import targets


def add_parser(sub) -> None:
    p = sub.add_parser(
        "list",
        help="load every location once and list its definitions",
        description="Load every location once and list repositories, jobs, schedules and "
        "sensors. A broken location is reported; the others are still listed.",
    )
    targets.add_target_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from workspace_manager.supervisor.manager import EventSink, Manager

    workspace, ident = targets.load(args)
    # A one-shot load: no restarts, and a runtime dir of its own beside any running `wsm up`.
    once = dataclasses.replace(
        workspace,
        locations=tuple(
            dataclasses.replace(
                loc, supervision=dataclasses.replace(loc.supervision, restart="never")
            )
            for loc in workspace.locations
        ),
    )
    errors: list = []
    from workspace_manager.envs.progress import console_reporter

    manager = Manager(
        once,
        f"list:{ident}:{os.getpid()}",
        events=EventSink(message=errors.append),
        build_reporter=console_reporter(sys.stderr),
    )
    result = asyncio.run(_collect(manager))
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_human(result)
    return 0 if all(loc["state"] == "ready" for loc in result["locations"].values()) else 1


async def _collect(manager) -> Dict[str, Any]:
    try:
        await manager.start(serve_control=False)
        await manager.wait_settled()
        out: Dict[str, Any] = {"locations": {}}
        for name, loc in manager.locations.items():
            snap = loc.snapshot or {}
            out["locations"][name] = {
                "state": loc.state.value,
                "python": snap.get("python_version"),
                "executable": snap.get("executable") or loc.environment,
                "error": loc.error if loc.state.value != "ready" else None,
                "traceback": loc.traceback if loc.state.value != "ready" else None,
                "repositories": snap.get("repositories") or [],
            }
        return out
    finally:
        await manager.shutdown()
        # a one-shot load: its logs were for this run only, and what failed is printed
        from workspace_manager.supervisor.logs import state_root

        shutil.rmtree(state_root() / manager.key, ignore_errors=True)


def _print_human(result: Dict[str, Any]) -> None:
    out = sys.stdout
    for name, loc in result["locations"].items():
        if loc["state"] != "ready":
            out.write(f"{name}  [{loc['state']}] {loc['error'] or ''}\n")
            if loc.get("traceback"):
                for line in loc["traceback"].rstrip().splitlines():
                    out.write(f"    {line}\n")
            continue
        out.write(f"{name}  [python {loc['python']}, {loc['executable']}]\n")
        for repo in loc["repositories"]:
            out.write(f"  repository {repo['name']}\n")
            for job in repo.get("jobs") or []:
                # one line: a docstring's own line breaks would start lines at column 0
                text = " ".join(str(job.get("description") or "").split())
                desc = f"  - {text}" if text else ""
                out.write(f"    job       {job['name']}{desc}\n")
            for sch in repo.get("schedules") or []:
                tz = f" {sch['execution_timezone']}" if sch.get("execution_timezone") else ""
                out.write(
                    f"    schedule  {sch['name']}  '{sch['cron_schedule']}'{tz} -> {sch['job_name']}\n"
                )
            for sen in repo.get("sensors") or []:
                out.write(f"    sensor    {sensor_line(sen)}\n")


def sensor_line(sen: Dict[str, Any]) -> str:
    """A sensor and all its jobs: `watch -> a, b (every 30s)`; a run status sensor also
    says which runs it watches: `alert on FAILURE of a, b -> page (every 5s)`, `on FAILURE
    of any job`, `of any job of any location` (the snapshot of sdk/snapshot.py)."""
    launches = [
        str(j) for j in sen.get("job_names") or ([sen["job_name"]] if sen.get("job_name") else [])
    ]
    words = [str(sen.get("name"))]
    if sen.get("run_status"):
        watched = sen.get("monitored_jobs")
        if watched:
            of = ", ".join(str(j) for j in watched)
        else:
            of = "any job" + (" of any location" if sen.get("monitor_all_code_locations") else "")
        words.append(f"on {sen['run_status']} of {of}")
        if launches:
            words.append("-> " + ", ".join(launches))
    else:
        words.append("-> " + (", ".join(launches) or "no job"))
    interval = sen.get("minimum_interval_seconds")
    if isinstance(interval, (int, float)):
        words.append(f"(every {interval:g}s)")
    return " ".join(words)

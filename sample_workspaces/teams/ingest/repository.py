"""Ingest team: files land in a drop folder; a sensor turns each new file into a run.

Runs under Debian's /usr/bin/python3 (`executable_path`), which has no third-party
packages: this file uses the standard library and the wsm SDK only.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from workspace_manager import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    SkipReason,
    job,
    repository,
    sensor,
)


def drop_folder() -> Path:
    # Relative to the working directory, which workspace.yaml sets to this folder.
    return Path(os.environ.get("INGEST_DROP_DIR", "drop"))


@job(tags={"team": "ingest", "kind": "load"})
def load_file(context):
    """Load one dropped CSV file; the sensor passes its path in run_config."""
    path = Path(context.run_config["path"])
    rows = path.read_text().splitlines()[1:]
    context.log.info("loaded %d rows from %s", len(rows), path.name)
    return {"file": path.name, "rows": len(rows), "team": os.environ.get("TEAM")}


@job(description="Rebuild the catalogue of everything loaded so far.")
def refresh_catalog(context):
    names = sorted(p.name for p in drop_folder().glob("*.csv"))
    context.log.info("catalogue: %d files in %s", len(names), drop_folder())
    return names


@job
def heartbeat(context):
    """Write nothing; proves the location is scheduled and its runs start."""
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    context.log.info("ingest is alive at %s", now)
    return now


@sensor(job=load_file, minimum_interval_seconds=15)
def new_drop_files(context):
    """One run per new file in the drop folder; the cursor is the last file name seen."""
    folder = drop_folder()
    if not folder.is_dir():
        yield SkipReason(f"drop folder {folder} does not exist")
        return
    names = sorted(p.name for p in folder.glob("*.csv") if p.name > (context.cursor or ""))
    if not names:
        yield SkipReason(f"no file after {context.cursor!r} in {folder}")
        return
    for name in names:
        yield RunRequest(
            run_key=name,  # one run per file, even if the sensor sees it twice
            run_config={"path": str(folder / name)},
            tags={"source": "drop", "file": name},
        )
    context.update_cursor(names[-1])


@sensor(job=refresh_catalog, minimum_interval_seconds=60)
def catalog_once_per_hour(context):
    """At most one catalogue refresh per clock hour, using the last run key."""
    hour = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H")
    if context.last_run_key == hour:
        return SkipReason(f"catalogue already refreshed in hour {hour}")
    return RunRequest(run_key=hour, tags={"repository": context.repository_name})


@sensor(job=refresh_catalog, minimum_interval_seconds=30)
def slow_sensor():
    """Sleeps 5 s on purpose: tests use it to show a slow call never blocks ping."""
    time.sleep(5)
    return SkipReason("slept 5 s")


heartbeat_schedule = ScheduleDefinition(
    job=heartbeat,
    cron_schedule="* * * * *",  # every minute, in UTC (no execution_timezone)
    tags={"team": "ingest"},
    default_status=DefaultScheduleStatus.RUNNING,  # on from the first `wsm up`
)


@repository(name="ingest", description="Drop-folder ingestion.")
def ingest_repository():
    return [new_drop_files, catalog_once_per_hour, slow_sensor, heartbeat_schedule]

"""Two repositories in one module: workspace.yaml loads each as its own location with `attribute`.

`analytics_daily` is the scheduled production work; `analytics_adhoc` holds backfills
that analysts trigger by writing requests to a queue file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from workspace_manager import (
    RunRequest,
    ScheduleDefinition,
    SkipReason,
    job,
    repository,
    sensor,
)
from workspace_manager.sdk import schedule

from .metrics import daily_totals


def warehouse() -> str:
    return os.environ.get("ANALYTICS_WAREHOUSE", "sqlite:///:memory:")


@job(
    name="compute_daily_metrics",
    description="Aggregate yesterday's orders into the metrics table.",
    tags={"team": "analytics", "tier": "1"},
)
def _compute_daily_metrics(context):
    amounts = context.run_config.get("amounts", [10.5, 3.2, 99.0])
    return {
        "warehouse": warehouse(),
        "date": context.run_config.get("date"),
        **daily_totals(amounts),
    }


@job(tags={"team": "analytics"})
def publish_dashboard():
    """Push the metrics to the dashboard."""
    return {"published_to": warehouse()}


@job(tags={"team": "analytics", "kind": "backfill"})
def backfill_metrics(context):
    """Recompute metrics for the days named in run_config."""
    days = context.run_config.get("days", [])
    return {"job": context.job_name, "backfilled": len(days), "warehouse": warehouse()}


daily_metrics_schedule = ScheduleDefinition(
    job=_compute_daily_metrics,
    cron_schedule="30 6 * * mon-fri",
    execution_timezone="America/New_York",
    description="Weekday mornings, New York time, before the markets open.",
    run_config={"amounts": [1.0, 2.0, 3.0]},
    tags={"trigger": "schedule"},
)


@schedule("0 */2 * * *", job=publish_dashboard, execution_timezone="Europe/London")
def dashboard_refresh(context):
    """Every two hours; each tick's run key is the tick's London time."""
    tick = context.scheduled_execution_time
    return RunRequest(run_key=tick.strftime("%Y-%m-%dT%H:%M%z"), tags={"tick": tick.isoformat()})


@sensor(job=backfill_metrics, minimum_interval_seconds=20)
def backfill_queue(context):
    """Read backfill requests from a JSON-lines queue; the cursor counts lines consumed."""
    queue = Path(os.environ.get("ANALYTICS_BACKFILL_QUEUE", "backfill_queue.jsonl"))
    if not queue.exists():
        return SkipReason(f"no queue file {queue}")
    lines = [line for line in queue.read_text().splitlines() if line.strip()]
    done = int(context.cursor or 0)
    if done >= len(lines):
        return SkipReason("queue drained")
    requests = []
    for number, line in enumerate(lines[done:], start=done + 1):
        entry = json.loads(line)
        requests.append(
            RunRequest(
                run_key=f"backfill-{number}",
                run_config={"days": entry["days"]},
                tags={"requested_by": entry.get("by", "unknown")},
            )
        )
    context.update_cursor(str(len(lines)))
    return requests


@repository
def analytics_daily():
    """Scheduled analytics: metrics every weekday, dashboard every two hours."""
    return [daily_metrics_schedule, dashboard_refresh]


@repository(description="Analyst-triggered backfills.")
def analytics_adhoc():
    return [backfill_queue, publish_dashboard]

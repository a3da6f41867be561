"""A sensor that reads payment events and asks for one retry run per failed payment."""

from __future__ import annotations

import json
import os
from pathlib import Path

from workspace_manager import RunRequest, SkipReason, sensor

from .jobs import reconcile_payments, retry_payment


def events_file() -> Path:
    return Path(os.environ.get("BILLING_EVENTS", "data/payment_events.jsonl"))


@sensor(job=reconcile_payments, minimum_interval_seconds=10)
def failed_payments(context):
    """Events after the cursor (the last event id seen); failures become retry runs."""
    last_seen = int(context.cursor or 0)
    events = [json.loads(line) for line in events_file().read_text().splitlines() if line.strip()]
    new = [event for event in events if event["id"] > last_seen]
    if not new:
        yield SkipReason(f"no payment event after id {last_seen}")
        return
    failures = [event for event in new if event["status"] == "failed"]
    for event in failures:
        yield RunRequest(
            run_key=f"retry-{event['payment_id']}-{event['id']}",
            run_config={"payment_id": event["payment_id"]},
            tags={"reason": event.get("reason", "unknown")},
            job_name=retry_payment.name,  # not the sensor's default job
        )
    if len(failures) < len(new):
        yield RunRequest(run_key=f"reconcile-after-{new[-1]['id']}")  # the default job
    context.update_cursor(str(new[-1]["id"]))

"""Billing sensors: failed payment events become retry runs; failed runs page on-call."""

from __future__ import annotations

import json
import os
from pathlib import Path

from workspace_manager import (
    DefaultSensorStatus,
    RunRequest,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from .jobs import (
    generate_invoices,
    page_on_call,
    reconcile_payments,
    retry_payment,
    send_dunning_emails,
)


def events_file() -> Path:
    return Path(os.environ.get("BILLING_EVENTS", "data/payment_events.jsonl"))


@sensor(
    jobs=[retry_payment, reconcile_payments],  # a RunRequest names its job (job_name=)
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,  # on from the first `wsm up`
)
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
        reason = event.get("reason", "unknown")
        yield RunRequest(
            run_key=f"retry-{event['payment_id']}-{event['id']}",
            run_config={"payment_id": event["payment_id"], "reason": reason},
            tags={"reason": reason},
            job_name=retry_payment.name,
        )
    if len(failures) < len(new):
        yield RunRequest(
            run_key=f"reconcile-after-{new[-1]['id']}", job_name=reconcile_payments.name
        )
    context.update_cursor(str(new[-1]["id"]))


@run_failure_sensor(
    monitored_jobs=[generate_invoices, reconcile_payments, retry_payment, send_dunning_emails],
    request_job=page_on_call,
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
)
def billing_failures(context):
    """Called once for each failed run of the jobs above: one page per failed run."""
    run = context.dagster_run
    return RunRequest(
        run_key=f"page-{run.run_id}",
        run_config={
            "run_id": run.run_id,
            "job": run.job_name,
            "error": context.failure_event.message,
        },
    )

"""Billing schedules: one per way the SDK offers to decide a tick's runs."""

from __future__ import annotations

from workspace_manager import RunRequest, ScheduleDefinition, SkipReason
from workspace_manager.sdk import schedule

from .jobs import generate_invoices, reconcile_payments, send_dunning_emails


@schedule(
    "0 1 1 * *",
    job=generate_invoices,
    name="monthly_invoices",
    execution_timezone="Europe/Paris",
    tags={"team": "billing"},
)
def invoice_schedule(context):
    """On the 1st at 01:00 Paris time, invoice the month that just ended."""
    tick = context.scheduled_execution_time
    year, month = (tick.year, tick.month - 1) if tick.month > 1 else (tick.year - 1, 12)
    period = f"{year}-{month:02d}"
    return RunRequest(run_key=f"invoices-{period}", run_config={"period": period})


def _reconcile_config(context):
    return {"window_hours": 4, "tick": context.scheduled_execution_time.isoformat()}


reconcile_schedule = ScheduleDefinition(
    job=reconcile_payments,
    cron_schedule="15 */4 * * *",
    name="reconcile_every_four_hours",
    execution_timezone="UTC",
    run_config_fn=_reconcile_config,
)


@schedule("0 9 * * *", job=send_dunning_emails, execution_timezone="America/New_York")
def weekday_dunning(context):
    """Every day at 09:00 New York time, but customers get no reminders at weekends."""
    tick = context.scheduled_execution_time
    if tick.weekday() >= 5:
        return SkipReason(f"{tick:%A}: no dunning emails at weekends")
    return RunRequest(run_key=f"dunning-{tick:%Y-%m-%d}")

"""Billing jobs. Those that need their run_config take a context; the others take none."""

from __future__ import annotations

import os

from workspace_manager import job


@job(tags={"team": "billing", "pii": "true"})
def generate_invoices(context):
    """Issue the month's invoices in the team's currency (BILLING_CURRENCY)."""
    return {
        "period": context.run_config.get("period"),
        "currency": os.environ.get("BILLING_CURRENCY", "USD"),
    }


@job(description="Match bank statements against recorded payments.")
def reconcile_payments(context):
    return {"window_hours": context.run_config.get("window_hours", 4)}


@job(tags={"team": "billing"})
def send_dunning_emails():
    """Remind customers with overdue invoices."""
    return "sent"


@job(tags={"team": "billing", "kind": "retry"})
def retry_payment(context):
    """Retry one failed payment named in run_config."""
    return {"retried": context.run_config["payment_id"]}

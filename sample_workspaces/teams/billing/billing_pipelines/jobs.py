"""Billing jobs. Those that need their run_config or log take a context; the others take none.

`context.log` is a standard `logging.Logger`: under `wsm up` its records are the run's log
lines (`wsm run logs ID`).
"""

from __future__ import annotations

import os

from workspace_manager import job

# Decline reasons the card network marks as final: retrying them only gets declined again.
HARD_DECLINES = {"card_declined", "card_expired", "stolen_card"}


class PaymentDeclined(Exception):
    """The payment cannot be retried automatically: the customer must act."""


@job(tags={"team": "billing", "pii": "true"})
def generate_invoices(context):
    """Issue the month's invoices in the team's currency (BILLING_CURRENCY)."""
    period = context.run_config.get("period")
    currency = os.environ.get("BILLING_CURRENCY", "USD")
    context.log.info("issuing invoices for %s in %s", period, currency)
    return {"period": period, "currency": currency}


@job(description="Match bank statements against recorded payments.")
def reconcile_payments(context):
    window = context.run_config.get("window_hours", 4)
    context.log.info("reconciling the last %s hours of bank statements", window)
    return {"window_hours": window}


@job(tags={"team": "billing"})
def send_dunning_emails():
    """Remind customers with overdue invoices."""
    return "sent"


@job(tags={"team": "billing", "kind": "retry"})
def retry_payment(context):
    """Retry one failed payment named in run_config; a hard decline fails the run (and the
    `billing_failures` sensor pages on-call)."""
    payment, reason = context.run_config["payment_id"], context.run_config.get("reason")
    if reason in HARD_DECLINES:
        raise PaymentDeclined(f"{payment}: {reason} is final, the customer must update the card")
    context.log.info("retrying %s (declined earlier: %s)", payment, reason)
    return {"retried": payment}


@job(tags={"team": "billing", "kind": "alert"})
def page_on_call(context):
    """Tell billing's on-call about a failed run (here: a warning in the run's log)."""
    failed = context.run_config
    context.log.warning(
        "paging billing on-call: run %s of %s failed: %s",
        failed["run_id"],
        failed["job"],
        failed["error"],
    )
    return {"paged": failed["run_id"]}

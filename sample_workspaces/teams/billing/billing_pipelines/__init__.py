"""Billing team's pipelines, loaded as a package (`python_package: billing_pipelines`).

The package is importable because workspace.yaml sets `working_directory: billing`;
nothing needs to be pip-installed.
"""

from __future__ import annotations

from workspace_manager import repository

from .jobs import (
    generate_invoices,
    page_on_call,
    reconcile_payments,
    retry_payment,
    send_dunning_emails,
)
from .schedules import invoice_schedule, reconcile_schedule, weekday_dunning
from .sensors import billing_failures, failed_payments


@repository(name="billing", description="Invoices, payments and dunning.")
def billing_repository():
    return [
        generate_invoices,
        invoice_schedule,
        reconcile_schedule,
        weekday_dunning,
        failed_payments,
        reconcile_payments,
        send_dunning_emails,
        retry_payment,
        billing_failures,
        page_on_call,
    ]

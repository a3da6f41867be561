"""A location whose code cannot be imported: its client library is not installed.

Only `workspace-with-broken.yaml` lists it; it shows the `error` state while the
other locations keep serving.
"""

from __future__ import annotations

import acme_warehouse_client  # noqa: F401  (deliberately missing)

from workspace_manager import job, repository


@job
def never_loaded():
    pass


@repository
def broken():
    return [never_loaded]

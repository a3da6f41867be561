"""(d) Never finishes loading: a busy loop at import time.

`startup_timeout_seconds` (3 s for this location) bounds the load; the location goes to
`error` ("did not load within 3s") and is not retried, since loading again would hang again.
"""

from workspace_manager import job, repository

n = 0
while True:  # spins in Python code, as a stuck import would
    n += 1


@job
def unreachable(): ...


@repository
def load_forever():
    return [unreachable]

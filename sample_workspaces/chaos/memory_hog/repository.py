"""(e) Loads fine, then a thread allocates (and touches) memory until well past its limit.

`memory_limit_mb` is set for this location; once its RSS stays above the limit the manager
kills it ("memory N MB above the limit of M MB"), restarts it with backoff, and after
`max_restarts` it is `failed`. The thread stops growing at ``CHAOS_MEMORY_CAP_MB`` so a
manager that fails to enforce the limit cannot exhaust the machine.
"""

import os
import threading
import time

from workspace_manager import job, repository

STEP_MB = 16
CAP_MB = int(os.environ.get("CHAOS_MEMORY_CAP_MB", "600"))
HOARD = []


def _allocate():
    time.sleep(0.5)
    while len(HOARD) * STEP_MB < CAP_MB:
        HOARD.append(b"\x01" * (STEP_MB << 20))  # non-zero bytes: every page is resident
        time.sleep(0.05)
    while True:
        time.sleep(60)


threading.Thread(target=_allocate, daemon=True).start()


@job
def greedy(): ...


@repository
def memory_hog():
    return [greedy]

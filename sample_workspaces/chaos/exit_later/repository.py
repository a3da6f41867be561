"""(b) Loads fine, then a thread started at import calls ``os._exit(3)`` a few seconds later.

Each run becomes `ready`, then exits with status 3: `backoff`, restart, ... until it has been
restarted `max_restarts` times within `window_seconds`, then `failed`.
"""

import os
import threading
import time

from workspace_manager import job, repository

DELAY = float(os.environ.get("CHAOS_DELAY_SECONDS", "2"))


def _exit_later():
    time.sleep(DELAY)
    os._exit(3)


threading.Thread(target=_exit_later, daemon=True).start()


@job
def doomed(): ...


@repository
def exit_later():
    return [doomed]

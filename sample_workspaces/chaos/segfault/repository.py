"""(c) Loads fine, then a thread started at import segfaults a few seconds later.

The crash happens after loading on purpose, so the location reaches `ready` first and the
crash is a restartable fault (`killed by SIGSEGV`, `backoff`, restart, ... `failed`); a
segfault during the import itself would look the same but never reach `ready`. Core dumps
are switched off first so the run leaves no core files behind.
"""

import ctypes
import os
import resource
import threading
import time

from workspace_manager import job, repository

DELAY = float(os.environ.get("CHAOS_DELAY_SECONDS", "2"))


def _segfault_later():
    time.sleep(DELAY)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    ctypes.string_at(0)  # reads address 0: SIGSEGV


threading.Thread(target=_segfault_later, daemon=True).start()


@job
def crashy(): ...


@repository
def segfault():
    return [crashy]

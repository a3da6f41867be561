"""(j) Dies 1.5 s after loading while an ordinary child holds its stdout and stderr.

The child (`sleep 1001`) inherits the loader's pipes, so they stay open after the loader
exits: the exit must still be seen at once (not after missed heartbeats: this location's
are 5 s apart), reported with its real reason (`exited with status 1`), and the child
killed with it. Each generation appends "LOADER_PID CHILD_PID" to `pids` beside this file.
"""

import os
import subprocess
import threading
import time

from workspace_manager import job, repository

PIDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pids")

_child = subprocess.Popen(["sleep", "1001"])
with open(PIDS, "a") as f:
    f.write(f"{os.getpid()} {_child.pid}\n")
threading.Thread(target=lambda: (time.sleep(1.5), os._exit(1)), daemon=True).start()


@job
def noop(): ...


@repository
def pipe_holder():
    return [noop]

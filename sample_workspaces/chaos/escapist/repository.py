"""(i) Starts processes that leave its process group and its tree at import.

One child in a session of its own (`start_new_session=True`) and a double-forked `setsid`
daemon whose parent exits at once, so it is nobody's descendant unless something makes it
so. The location itself is healthy and stays `ready`; `wsm down`, a reload, a restart and
SIGKILL of the manager or of the loader must leave neither behind. Each process's pid is
appended to `pids` beside this file ("LOADER_PID PID" lines), so a test follows exactly
these processes.
"""

import os
import subprocess

from workspace_manager import job, repository

PIDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pids")

_own_session = subprocess.Popen(["sleep", "1003"], start_new_session=True)
with open(PIDS, "a") as f:
    f.write(f"{os.getpid()} {_own_session.pid}\n")
subprocess.run(
    [
        "sh",
        "-c",
        f'setsid sh -c "echo {os.getpid()} \\$\\$ >> {PIDS}; exec sleep 1004" >/dev/null 2>&1 &',
    ],
    check=True,
)


@job
def noop(): ...


@repository
def escapist():
    return [noop]

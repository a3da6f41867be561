"""(g) Spawns a grandchild at import that ignores SIGTERM (and a second one that does too).

The location itself is healthy and stays `ready`; the point is shutdown: `wsm down`, a reload
and a restart must stop the grandchildren too (SIGTERM, grace, then SIGKILL), and so must the
loader's lifeline when the manager is killed with SIGKILL.
"""

import subprocess
import sys

from workspace_manager import job, repository

STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('armed', flush=True)\n"
    "sys.stdout.close()\n"
    "while True:\n"
    "    time.sleep(60)\n"
)

CHILDREN = [
    subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE) for _ in range(2)
]
for child in CHILDREN:  # loaded only once both ignore SIGTERM: no lucky early kill
    assert child.stdout.readline() == b"armed\n"
    child.stdout.close()


@job
def spawner(): ...


@repository
def sigterm_child():
    return [spawner]

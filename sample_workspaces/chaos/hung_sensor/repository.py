"""(h) A sensor that hangs forever (blocked on an event nobody sets), and one that answers.

`call_timeout_seconds` fails each call to `hang_forever` with a timeout; the location is not
killed, because its heartbeats (answered by the loader's reader thread) still come back, and
its other calls keep working.
"""

import threading

from workspace_manager import RunRequest, job, repository, sensor

_NEVER = threading.Event()


@job
def waits(): ...


@sensor(job=waits)
def hang_forever():
    _NEVER.wait()
    yield RunRequest(run_key=None)


@sensor(job=waits)
def answers():
    yield RunRequest(run_key="still-alive")


@repository
def hung_sensor():
    return [waits, hang_forever, answers]

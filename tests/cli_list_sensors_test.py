"""`wsm list` shows every job of a sensor: all the jobs a sensor of several jobs launches,
and, for a run status sensor, the runs it watches as well as the job it requests."""

from __future__ import annotations

from e2e import WorkspaceDir

REPO = """
from workspace_manager import (
    DagsterRunStatus, RunRequest, job, repository, run_failure_sensor, run_status_sensor, sensor,
)

@job
def extract(context):
    pass

@job
def load(context):
    '''Load the rows
    into the warehouse.'''

@job
def page(context):
    pass

@sensor(jobs=[extract, load], minimum_interval_seconds=0.5)
def both(context):
    return RunRequest(job_name="load")

@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, monitored_jobs=[extract, load],
                   request_job=page)
def after_both(context):
    return RunRequest()

@run_failure_sensor
def any_failure(context):
    pass

@run_failure_sensor(monitor_all_code_locations=True, minimum_interval_seconds=5)
def everywhere(context):
    pass

@repository
def repo():
    return [extract, load, page, both, after_both, any_failure, everywhere]
"""


def test_list_shows_all_the_jobs_of_each_sensor(ws: WorkspaceDir) -> None:
    ws.file("repo.py", REPO)
    listed = ws.run("list", "-f", "repo.py")
    assert listed.returncode == 0, listed.stderr
    sensors = [ln.strip() for ln in listed.stdout.splitlines() if ln.strip().startswith("sensor")]
    assert sensors == [
        "sensor    both -> extract, load (every 0.5s)",
        "sensor    after_both on SUCCESS of extract, load -> page (every 30s)",
        "sensor    any_failure on FAILURE of any job (every 30s)",
        "sensor    everywhere on FAILURE of any job of any location (every 5s)",
    ]
    # a docstring's line breaks stay inside its job's line
    assert "    job       load  - Load the rows into the warehouse." in listed.stdout.splitlines()

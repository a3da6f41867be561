"""One repository file, loaded by three locations: each reports which teamlib and which Python
it sees, through job tags (get_snapshot) and a sensor's run_config (evaluate_sensor)."""

import sys

from workspace_manager import RunRequest, job, repository, sensor

try:
    import teamlib

    TEAMLIB = teamlib.__version__
except ImportError:  # the location on /usr/bin/python3 has no environment, hence no teamlib
    TEAMLIB = "absent"

PYTHON = sys.version.split()[0]


@job(tags={"teamlib": TEAMLIB, "python": PYTHON})
def report_versions(context):
    return {"teamlib": TEAMLIB, "python": sys.version}


@sensor(job=report_versions)
def versions_sensor():
    yield RunRequest(
        run_key=None,
        run_config={"teamlib": TEAMLIB, "python": sys.version, "executable": sys.executable},
        tags={"teamlib": TEAMLIB},
    )


@repository
def isolation():
    return [report_versions, versions_sensor]

"""A healthy location loaded as a module under Debian's /usr/bin/python3 (no msgpack there)."""

import sys

from workspace_manager import RunRequest, job, repository, sensor


@job
def report(context):
    return {"python": sys.version_info[:2], "config": context.run_config}


@sensor(job=report)
def echo(context):
    yield RunRequest(run_key=context.cursor, run_config={"cursor": context.cursor})


@repository
def healthy_b():
    return [report, echo]

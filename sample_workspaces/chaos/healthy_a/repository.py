"""A healthy location (wsm's own interpreter): a sensor that counts its calls in its cursor."""

from workspace_manager import RunRequest, ScheduleDefinition, job, repository, sensor


@job
def ingest(context):
    return {"ok": True, "config": context.run_config}


@sensor(job=ingest)
def counter(context):
    n = int(context.cursor or 0) + 1
    context.update_cursor(str(n))
    yield RunRequest(run_key=f"tick-{n}", run_config={"n": n})


nightly = ScheduleDefinition(job=ingest, cron_schedule="0 2 * * *", name="nightly")


@repository
def healthy_a():
    return [ingest, counter, nightly]

"""The shapes Dagster users already write (SPEC section 1, issue 8 section 11): module-level
`Definitions`, `@repository` returning a dict, `ScheduleDefinition(job_name=...)`, `@schedule`
and JSON job tags. Each loads through a real `wsm list`, and each mistake is a DefinitionError."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Dict

import pytest
from e2e import WorkspaceDir

from workspace_manager import (
    Definitions,
    RunRequest,
    ScheduleDefinition,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    job,
    repository,
    schedule,
    sensor,
)
from workspace_manager.sdk.errors import DefinitionError
from workspace_manager.sdk.evaluation import evaluate_schedule, evaluate_sensor

DEFS = """
from workspace_manager import Definitions, ScheduleDefinition, job, sensor, RunRequest

@job(tags={"priority": 1, "team": "a", "owners": ["x", "y"], "meta": {"tier": None}})
def nightly():
    pass

@job
def hourly():
    pass

@sensor(job_name="hourly", minimum_interval_seconds=60)
def new_files(context):
    yield RunRequest(run_key="f1")

defs = Definitions(
    jobs=[nightly, hourly],
    schedules=[ScheduleDefinition(job_name="nightly", cron_schedule="0 2 * * *")],
    sensors=[new_files],
)
"""

DICT_REPO = """
from workspace_manager import ScheduleDefinition, job, repository, schedule, SkipReason

@job
def load():
    pass

@schedule(
    cron_schedule="30 6 * * 1-5",
    job_name="load",
    name="weekday_load",
    execution_timezone="Europe/Paris",
    description="loads on weekdays",
)
def weekday_load(context):
    if context.scheduled_execution_time.day == 1:
        return SkipReason("not on the first")
    return {"ops": {"day": context.scheduled_execution_time.strftime("%Y-%m-%d")}}

@repository
def lazy_repo():
    return {
        "jobs": {"load": lambda: load},
        "schedules": {"weekday_load": weekday_load},
        "sensors": {},
    }
"""

MISSING_JOB = """
from workspace_manager import Definitions, ScheduleDefinition, job

@job
def real():
    pass

defs = Definitions(jobs=[real], schedules=[ScheduleDefinition(job_name="typo", cron_schedule="@daily")])
"""


def _list(ws: WorkspaceDir) -> Dict[str, Any]:
    ws.file("defs_code/defs_mod.py", DEFS)
    ws.file("dict_code/dict_mod.py", DICT_REPO)
    ws.file("missing_code/missing_mod.py", MISSING_JOB)
    ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "defs_code/defs_mod.py", "location_name": "d"}},
                {"python_file": {"relative_path": "dict_code/dict_mod.py", "location_name": "r"}},
                {
                    "python_file": {
                        "relative_path": "missing_code/missing_mod.py",
                        "location_name": "m",
                    }
                },
            ]
        }
    )
    done = ws.run("list", "--json")
    assert done.returncode == 1, done.stdout + done.stderr  # m fails, the others load
    human = ws.run("list")
    return {"json": json.loads(done.stdout), "human": human.stdout}


def test_dagster_shapes_load_with_wsm_list(ws: WorkspaceDir) -> None:
    result = _list(ws)
    locations = result["json"]["locations"]

    assert locations["d"]["state"] == "ready", locations["d"]
    (defs,) = locations["d"]["repositories"]
    assert defs["name"] == "defs"  # a Definitions is named after its attribute
    jobs = {j["name"]: j for j in defs["jobs"]}
    assert list(jobs) == ["nightly", "hourly"]
    assert jobs["nightly"]["tags"] == {
        "priority": "1",  # JSON values travel JSON-encoded, as Dagster's run tags do
        "team": "a",
        "owners": '["x", "y"]',
        "meta": '{"tier": null}',
    }
    (sched,) = defs["schedules"]
    assert (sched["name"], sched["job_name"], sched["cron_schedule"]) == (
        "nightly_schedule",
        "nightly",
        "0 2 * * *",
    )
    (sens,) = defs["sensors"]
    assert (sens["name"], sens["job_name"]) == ("new_files", "hourly")

    assert locations["r"]["state"] == "ready", locations["r"]
    (lazy,) = locations["r"]["repositories"]
    assert lazy["name"] == "lazy_repo"
    assert [j["name"] for j in lazy["jobs"]] == ["load"]
    assert lazy["schedules"] == [
        {
            "name": "weekday_load",
            "job_name": "load",
            "cron_schedule": "30 6 * * 1-5",
            "execution_timezone": "Europe/Paris",
            "description": "loads on weekdays",
            "default_status": None,
            "tags": {},
        }
    ]

    assert locations["m"]["state"] == "error"
    assert locations["m"]["error"] == (
        "DefinitionError: Definitions: schedule 'typo_schedule' targets job 'typo', "
        "which is not among its jobs (real)"
    )
    human = result["human"]
    assert "repository defs" in human and "repository lazy_repo" in human
    assert "schedule  weekday_load  '30 6 * * 1-5' Europe/Paris -> load" in human


# ---------------------------------------------------------------- in-process: behaviour


@job
def target():
    pass


def plain():
    pass


def test_schedule_decorator_is_callable_and_evaluates_all_return_shapes() -> None:
    @schedule(cron_schedule="0 * * * *", job=target, tags={"priority": 2})
    def shapes(context):
        hour = context.scheduled_execution_time.hour
        if hour == 0:
            return SkipReason("midnight")
        if hour == 1:
            return [RunRequest(run_key="a"), RunRequest(run_key="b", tags={"extra": True})]
        return {"hour": hour}

    at = dt.datetime(2024, 5, 1, 3, tzinfo=dt.timezone.utc)
    assert shapes(build_schedule_context(scheduled_execution_time=at)) == {"hour": 3}
    naive = build_schedule_context(dt.datetime(2024, 5, 1, 0))
    assert naive.scheduled_execution_time.tzinfo is dt.timezone.utc

    repo = repository(name="r")(lambda: [shapes])
    midnight = dt.datetime(2024, 5, 1, 0, tzinfo=dt.timezone.utc).timestamp()
    assert evaluate_schedule(repo, "shapes", midnight)["skip_reason"] == "midnight"
    one = evaluate_schedule(repo, "shapes", midnight + 3600)["run_requests"]
    assert [(r["run_key"], r["tags"]) for r in one] == [
        ("a", {"priority": "2"}),
        ("b", {"priority": "2", "extra": "true"}),
    ]
    three = evaluate_schedule(repo, "shapes", midnight + 3 * 3600)["run_requests"]
    assert three[0]["run_config"] == {"hour": 3} and three[0]["job_name"] == "target"


def test_sensor_by_job_name_is_callable_and_evaluates() -> None:
    @sensor(job_name="target")
    def watch(context):
        context.update_cursor("next")
        yield RunRequest(run_key=context.cursor)

    context = build_sensor_context(cursor="c0")
    assert [r.run_key for r in watch(context)] == ["next"]
    repo = Definitions(jobs=[target], sensors=[watch]).to_repository("defs")
    tick = evaluate_sensor(repo, "watch", cursor="c0")
    assert tick["cursor"] == "next" and tick["run_requests"][0]["job_name"] == "target"


def test_definitions_helpers_and_attribute_names() -> None:
    defs = Definitions(
        jobs=[target], schedules=[ScheduleDefinition(job=target, cron_schedule="@daily")]
    )
    assert defs.get_job_def("target") is target
    assert defs.get_schedule_def("target_schedule").job_name == "target"
    assert defs.to_repository("prod").name == "prod"
    assert Definitions(assets=[], resources={}).jobs == []


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Definitions(assets=[object()]), "assets= is not supported"),
        (lambda: Definitions(resources={"db": 1}), "resources= is not supported"),
        (lambda: Definitions(jobs=target), "jobs must be a list"),
        (lambda: Definitions(jobs=[target, lambda: None]), "is not a job, schedule or sensor"),
        (
            lambda: Definitions(sensors=[sensor(job_name="nope")(plain)]),
            "sensor 'plain' targets job 'nope'",
        ),
        (
            lambda: ScheduleDefinition(job=target, job_name="target", cron_schedule="@daily"),
            "give job or job_name, not both",
        ),
        (lambda: ScheduleDefinition(cron_schedule="@daily"), "no job given"),
        (lambda: ScheduleDefinition(job_name=3, cron_schedule="@daily"), "job_name must be a str"),
        (lambda: schedule(lambda: None), "@schedule needs arguments"),  # type: ignore[arg-type]
        (lambda: schedule("@daily")(plain), "no job given"),
        (
            lambda: repository(name="r")(lambda: {"jobs": {"other": target}}),
            "jobs['other'] is the job named 'target'; the key must be its name",
        ),
        (
            lambda: repository(name="r")(lambda: {"pipelines": {}}),
            "unknown key 'pipelines'",
        ),
        (
            lambda: repository(name="r")(lambda: {"schedules": {"target": target}}),
            "schedules['target'] is <JobDefinition 'target'>, not a schedule",
        ),
        (
            lambda: Definitions(
                schedules=[ScheduleDefinition(job_name="ghost", cron_schedule="@daily")]
            ),
            "targets job 'ghost', which is not among its jobs (none)",
        ),
    ],
)
def test_mistakes_are_definition_errors(make: Any, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        make()
    assert message in str(info.value)

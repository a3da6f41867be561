"""`@sensor(jobs=[a, b])` (Dagster's `jobs=`): every RunRequest names its job_name."""

from __future__ import annotations

from typing import Any

import pytest

from workspace_manager import (
    DefinitionError,
    Definitions,
    RepositoryDefinition,
    RunRequest,
    SensorDefinition,
    job,
    sensor,
)
from workspace_manager.sdk.evaluation import evaluate_sensor
from workspace_manager.sdk.snapshot import repository_snapshot


@job
def extract():
    pass


@job
def load():
    pass


@job
def unrelated():
    pass


@sensor(jobs=[extract, load])
def fan_out():
    yield RunRequest(run_key="e1", job_name="extract")
    yield RunRequest(run_key="l1", job_name="load", run_config={"x": 1})


def test_jobs_are_added_to_the_repository_and_each_request_names_its_job() -> None:
    repo = RepositoryDefinition("r", [fan_out])
    assert [j.name for j in repo.jobs] == ["extract", "load"]
    result = evaluate_sensor(repo, "fan_out")
    assert [(r["run_key"], r["job_name"]) for r in result["run_requests"]] == [
        ("e1", "extract"),
        ("l1", "load"),
    ]
    assert fan_out.job_name is None and fan_out.job is None
    assert fan_out.job_names == ["extract", "load"]


def test_definitions_include_the_jobs_too() -> None:
    defs = Definitions(sensors=[fan_out])
    assert [j.name for j in defs.jobs] == ["extract", "load"]


def test_a_request_without_job_name_is_an_error_naming_the_sensor() -> None:
    @sensor(jobs=[extract, load])
    def vague():
        return RunRequest(run_key="k")

    with pytest.raises(
        DefinitionError,
        match=r"sensor 'vague' targets several jobs \(extract, load\); each RunRequest must "
        r"name one: RunRequest\(job_name=\.\.\.\)",
    ):
        evaluate_sensor(RepositoryDefinition("r", [vague]), "vague")


def test_a_request_for_a_job_the_sensor_does_not_target_is_an_error() -> None:
    @sensor(jobs=[extract, load])
    def stray():
        return RunRequest(run_key="k", job_name="unrelated")

    repo = RepositoryDefinition("r", [stray, unrelated])
    with pytest.raises(DefinitionError, match="sensor 'stray' requested a run of job 'unrelated'"):
        evaluate_sensor(repo, "stray")


def test_jobs_by_name_are_looked_up_in_the_repository() -> None:
    @sensor(jobs=["extract", load])
    def named():
        return RunRequest(job_name="extract")

    repo = RepositoryDefinition("r", [extract, named])
    assert evaluate_sensor(repo, "named")["run_requests"][0]["job_name"] == "extract"
    with pytest.raises(DefinitionError, match="sensor 'named' targets job 'extract', which is"):
        RepositoryDefinition("r2", [named])


def test_one_job_in_jobs_is_the_default_job() -> None:
    @sensor(jobs=[load])
    def single():
        return RunRequest(run_key="k")

    assert single.job is load and single.job_name == "load"
    result = evaluate_sensor(RepositoryDefinition("r", [single]), "single")
    assert result["run_requests"][0]["job_name"] == "load"


def test_same_job_twice_is_kept_once() -> None:
    s = SensorDefinition(lambda: None, name="twice", jobs=[load, "load", load])
    assert s.job_names == ["load"] and s.jobs == [load]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"jobs": [extract], "job": load}, "give one of job, jobs"),
        ({"jobs": [extract], "job_name": "load"}, "give one of job_name, jobs"),
        ({"jobs": []}, "jobs is empty"),
        ({"jobs": extract}, r"jobs must be a list of jobs, got .*\(use job= for one job\)"),
        ({"jobs": "extract"}, "jobs must be a list of jobs"),
        ({"jobs": [extract, print]}, r"jobs\[1\] is .*, not a @job definition"),
        ({"jobs": ["bad name"]}, "job name 'bad name' is invalid"),
    ],
)
def test_jobs_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        sensor(name="checked", **kwargs)(lambda: None)


def test_two_different_jobs_with_one_name_are_refused() -> None:
    other_load: Any = job(name="load")(lambda: None)
    with pytest.raises(DefinitionError, match="two different jobs in jobs are named 'load'"):
        sensor(name="clash", jobs=[load, other_load])(lambda: None)


def test_snapshot_lists_job_names() -> None:
    @sensor(job=unrelated)
    def plain():
        return None

    snap = repository_snapshot(RepositoryDefinition("r", [fan_out, plain]))
    sensors = {s["name"]: s for s in snap["sensors"]}
    assert sensors["fan_out"]["job_name"] is None
    assert sensors["fan_out"]["job_names"] == ["extract", "load"]
    assert sensors["fan_out"]["sensor_type"] == "standard"
    assert sensors["plain"]["job_name"] == "unrelated"
    assert sensors["plain"]["job_names"] == ["unrelated"]


def test_wsm_list_shows_every_target_and_the_run_status(capsys: pytest.CaptureFixture) -> None:
    from workspace_manager import run_failure_sensor
    from workspace_manager.cli.listing import _print_human

    @run_failure_sensor
    def pager(context):
        pass

    snap = repository_snapshot(RepositoryDefinition("r", [fan_out, pager]))
    _print_human(
        {
            "locations": {
                "loc": {
                    "state": "ready",
                    "python": "3.11.2",
                    "executable": "/usr/bin/python3",
                    "repositories": [snap],
                }
            }
        }
    )
    out = capsys.readouterr().out
    assert "sensor    fan_out -> extract, load (every 30s)" in out
    assert "sensor    pager on FAILURE of any job (every 30s)" in out

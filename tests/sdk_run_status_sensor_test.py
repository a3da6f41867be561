"""@run_status_sensor and @run_failure_sensor: shapes, checks, contexts and evaluation."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from workspace_manager import (
    DagsterRun,
    DagsterRunStatus,
    DefinitionError,
    Definitions,
    RepositoryDefinition,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    RunStatusSensorDefinition,
    SensorResult,
    SkipReason,
    build_run_status_sensor_context,
    job,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)
from workspace_manager.sdk.evaluation import evaluate_run_status_sensor, evaluate_sensor
from workspace_manager.sdk.snapshot import repository_snapshot


@job
def etl():
    pass


@job
def other():
    pass


@job
def report():
    pass


@job
def alert():
    pass


def run(
    run_id: str = "r1", job_name: str = "etl", status: str = "SUCCESS", **extra: Any
) -> Dict[str, Any]:
    return {"run_id": run_id, "job_name": job_name, "status": status, **extra}


# --- definitions -------------------------------------------------------------------------


def test_run_status_sensor_defaults() -> None:
    @run_status_sensor(run_status=DagsterRunStatus.SUCCESS)
    def on_success(context):
        """Reports successes."""

    assert isinstance(on_success, RunStatusSensorDefinition)
    assert on_success.name == "on_success"
    assert on_success.run_status is DagsterRunStatus.SUCCESS
    assert on_success.sensor_type == "run_status"
    assert on_success.minimum_interval_seconds == 30
    assert on_success.description == "Reports successes."
    assert on_success.monitored_jobs is None and not on_success.monitor_all_code_locations
    assert on_success.job_name is None and on_success.job_names == []
    assert on_success.default_status is None


@pytest.mark.parametrize(
    "status, expected",
    [
        (DagsterRunStatus.SUCCESS, "SUCCESS"),
        ("FAILURE", "FAILURE"),
        ("canceled", "CANCELED"),
        (DagsterRunStatus.STARTED, "STARTED"),
    ],
)
def test_run_status_shapes(status: Any, expected: str) -> None:
    s = run_status_sensor(run_status=status, name="s")(lambda context: None)
    assert s.run_status.value == expected


@pytest.mark.parametrize("bad", ["DONE", "", 3, None, "RUNNING"])
def test_bad_run_status(bad: Any) -> None:
    with pytest.raises(DefinitionError, match="run_status"):
        run_status_sensor(run_status=bad, name="s")(lambda context: None)


def test_bare_decorator_needs_a_status() -> None:
    with pytest.raises(DefinitionError, match="sensor 'fn': @run_status_sensor needs a run_status"):

        @run_status_sensor
        def fn(context):
            pass


def test_run_failure_sensor_bare_and_called() -> None:
    @run_failure_sensor
    def bare(context):
        pass

    @run_failure_sensor(name="named", request_job=alert, monitored_jobs=[etl, "other"])
    def called(context):
        pass

    for s in (bare, called):
        assert s.run_status is DagsterRunStatus.FAILURE and s.failure_context
    assert called.name == "named"
    assert called.job_name == "alert" and called.job is alert
    assert called.monitored_jobs == ["etl", "other"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"request_job": alert, "request_jobs": [report]}, "request_job or request_jobs"),
        ({"monitored_jobs": [etl], "monitor_all_code_locations": True}, "not both"),
        ({"monitored_jobs": []}, "monitored_jobs is empty"),
        ({"monitored_jobs": etl}, "monitored_jobs must be a list"),
        ({"monitored_jobs": [3]}, r"monitored_jobs\[0\] is 3"),
        ({"monitored_jobs": ["no good"]}, "job name 'no good' is invalid"),
        ({"monitor_all_code_locations": "yes"}, "must be True or False"),
        ({"request_job": print}, "not a @job definition"),
        ({"minimum_interval_seconds": 0}, "minimum_interval_seconds"),
    ],
)
def test_run_status_sensor_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        run_status_sensor(run_status="SUCCESS", name="checked", **kwargs)(lambda context: None)


def test_request_jobs_are_added_to_the_repository_monitored_jobs_are_not() -> None:
    @run_status_sensor(run_status="SUCCESS", monitored_jobs=[other], request_jobs=[report, alert])
    def chain(context):
        pass

    repo = RepositoryDefinition("r", [chain])
    assert [j.name for j in repo.jobs] == ["report", "alert"]
    assert [s.name for s in Definitions(sensors=[chain]).sensors] == ["chain"]


def test_snapshot_of_run_status_sensors() -> None:
    @run_failure_sensor(monitored_jobs=[etl], request_job=alert, default_status="RUNNING")
    def on_fail(context):
        pass

    @run_status_sensor(run_status="CANCELED", monitor_all_code_locations=True)
    def on_cancel(context):
        pass

    snap = repository_snapshot(RepositoryDefinition("r", [etl, on_fail, on_cancel]))
    sensors = {s["name"]: s for s in snap["sensors"]}
    assert sensors["on_fail"] == {
        "name": "on_fail",
        "job_name": "alert",
        "minimum_interval_seconds": 30,
        "description": None,
        "default_status": "RUNNING",
        "sensor_type": "run_status",
        "job_names": ["alert"],
        "run_status": "FAILURE",
        "monitored_jobs": ["etl"],
        "monitor_all_code_locations": False,
    }
    assert sensors["on_cancel"]["run_status"] == "CANCELED"
    assert sensors["on_cancel"]["monitored_jobs"] is None
    assert sensors["on_cancel"]["monitor_all_code_locations"] is True
    assert sensors["on_cancel"]["job_name"] is None and sensors["on_cancel"]["job_names"] == []


# --- evaluation ----------------------------------------------------------------------------


def test_each_matching_run_is_delivered_once_in_order() -> None:
    seen = []

    @run_status_sensor(run_status=DagsterRunStatus.SUCCESS, request_job=report)
    def chain(context):
        seen.append((context.dagster_run.run_id, context.run.job_name, context.sensor_name))
        return RunRequest(run_key=context.dagster_run.run_id, tags={"from": context.run.job_name})

    repo = RepositoryDefinition("r", [etl, other, chain])
    runs = [run("a"), run("b", "other"), run("c", status="FAILURE"), run("d")]
    result = evaluate_run_status_sensor(repo, "chain", runs, location="loc")
    assert seen == [("a", "etl", "chain"), ("b", "other", "chain"), ("d", "etl", "chain")]
    assert [(r["run_key"], r["job_name"], r["tags"]) for r in result["run_requests"]] == [
        ("a", "report", {"from": "etl"}),
        ("b", "report", {"from": "other"}),
        ("d", "report", {"from": "etl"}),
    ]
    assert result["skip_reason"] is None
    assert [(r["run_id"], r["delivered"], r["error"]) for r in result["results"]] == [
        ("a", True, None),
        ("b", True, None),
        ("c", False, None),
        ("d", True, None),
    ]
    assert result["results"][2]["skip_reason"] == "run status FAILURE is not SUCCESS"


def test_monitoring_by_job_and_location() -> None:
    calls = []
    only_etl = run_status_sensor(run_status="SUCCESS", name="only_etl", monitored_jobs=[etl])(
        lambda context: calls.append(("only_etl", context.run.run_id))
    )
    own = run_status_sensor(run_status="SUCCESS", name="own")(
        lambda context: calls.append(("own", context.run.run_id))
    )
    everywhere = run_status_sensor(
        run_status="SUCCESS", name="everywhere", monitor_all_code_locations=True
    )(lambda context: calls.append(("everywhere", context.run.run_id)))
    repo = RepositoryDefinition("r", [etl, other, only_etl, own, everywhere])
    runs = [
        run("here_etl", location="loc"),
        run("here_other", "other", location="loc"),
        run("there_etl", location="elsewhere"),
        run("no_location"),
    ]
    results = {}
    for name in ("only_etl", "own", "everywhere"):
        out = evaluate_run_status_sensor(repo, name, runs, location="loc")
        results[name] = {r["run_id"]: r["skip_reason"] for r in out["results"]}
    assert calls == [
        ("only_etl", "here_etl"),
        ("only_etl", "no_location"),
        ("own", "here_etl"),
        ("own", "here_other"),
        ("own", "no_location"),
        ("everywhere", "here_etl"),
        ("everywhere", "here_other"),
        ("everywhere", "there_etl"),
        ("everywhere", "no_location"),
    ]
    assert results["only_etl"]["here_other"] == "job 'other' is not monitored"
    assert results["own"]["there_etl"] == "run of location 'elsewhere', not 'loc'"


def test_an_exception_for_one_run_is_recorded_and_the_others_go_on() -> None:
    @run_failure_sensor(request_job=alert)
    def flaky(context):
        if context.dagster_run.run_id == "bad":
            yield RunRequest(run_key="partial")  # dropped: this run's delivery failed
            raise RuntimeError("cannot page anyone")
        yield RunRequest(run_key=context.dagster_run.run_id)

    repo = RepositoryDefinition("r", [etl, flaky])
    runs = [run(i, status="FAILURE", error="boom") for i in ("ok1", "bad", "ok2")]
    result = evaluate_run_status_sensor(repo, "flaky", runs, location="loc")
    assert [r["run_key"] for r in result["run_requests"]] == ["ok1", "ok2"]
    errors = {r["run_id"]: r["error"] for r in result["results"]}
    assert errors["ok1"] is None and errors["ok2"] is None
    assert errors["bad"]["type"] == "RuntimeError"
    assert errors["bad"]["message"] == "cannot page anyone"
    assert all(r["delivered"] for r in result["results"])


def test_error_map_is_the_callers() -> None:
    bad = run_status_sensor(run_status="SUCCESS", name="bad")(lambda context: 1 / 0)
    repo = RepositoryDefinition("r", [bad])
    result = evaluate_run_status_sensor(
        repo, "bad", [run()], error_map=lambda exc: {"type": "X", "message": repr(exc)}
    )
    assert result["results"][0]["error"] == {
        "type": "X",
        "message": "ZeroDivisionError('division by zero')",
    }


def test_skip_reasons_and_none() -> None:
    @run_status_sensor(run_status="SUCCESS", request_job=report)
    def picky(context):
        if context.run.job_name == "report":
            return SkipReason("not reporting on reports")
        if context.run.tags.get("quiet") == "1":
            return None
        return RunRequest()

    repo = RepositoryDefinition("r", [etl, picky])
    only_skips = evaluate_run_status_sensor(
        repo, "picky", [run("a", "report"), run("b", "report"), run("c", tags={"quiet": "1"})]
    )
    assert only_skips["run_requests"] == []
    assert only_skips["skip_reason"] == "not reporting on reports"
    assert [r["skip_reason"] for r in only_skips["results"]] == [
        "not reporting on reports",
        "not reporting on reports",
        None,
    ]
    mixed = evaluate_run_status_sensor(repo, "picky", [run("a", "report"), run("b")])
    assert len(mixed["run_requests"]) == 1 and mixed["skip_reason"] is None


def test_request_without_a_target_or_job_name_fails_that_run() -> None:
    @run_status_sensor(run_status="SUCCESS")
    def no_target(context):
        return RunRequest()

    @run_status_sensor(run_status="SUCCESS", request_jobs=[report, alert])
    def two_targets(context):
        if context.run.run_id == "named":
            return RunRequest(job_name="alert")
        return RunRequest()

    repo = RepositoryDefinition("r", [etl, no_target, two_targets])
    (result,) = evaluate_run_status_sensor(repo, "no_target", [run()])["results"]
    assert result["error"]["type"] == "DefinitionError"
    assert (
        "sensor 'no_target' returned a RunRequest but targets no job" in result["error"]["message"]
    )
    out = evaluate_run_status_sensor(repo, "two_targets", [run("named"), run("vague")])
    assert [r["job_name"] for r in out["run_requests"]] == ["alert"]
    assert "each RunRequest must name one" in out["results"][1]["error"]["message"]


def test_sensor_result_from_a_run_status_sensor() -> None:
    ok = run_status_sensor(run_status="SUCCESS", name="ok", request_job=report)(
        lambda context: SensorResult(run_requests=[RunRequest("x")])
    )
    cursor = run_status_sensor(run_status="SUCCESS", name="cursor")(
        lambda context: SensorResult(cursor="mine")
    )
    repo = RepositoryDefinition("r", [etl, ok, cursor])
    assert [
        r["run_key"] for r in evaluate_run_status_sensor(repo, "ok", [run()])["run_requests"]
    ] == ["x"]
    (result,) = evaluate_run_status_sensor(repo, "cursor", [run()])["results"]
    assert "cursor is kept by wsm" in result["error"]["message"]


def test_the_wrong_kind_of_call_is_a_clear_error() -> None:
    on = run_status_sensor(run_status="SUCCESS", name="on")(lambda context: None)
    plain = sensor(job=etl, name="plain")(lambda: None)
    repo = RepositoryDefinition("r", [on, plain])
    with pytest.raises(DefinitionError, match="sensor 'on' is a run status sensor"):
        evaluate_sensor(repo, "on")
    with pytest.raises(DefinitionError, match="sensor 'plain' is not a run status sensor"):
        evaluate_run_status_sensor(repo, "plain", [run()])


def test_function_without_context_and_generator_output() -> None:
    @run_status_sensor(run_status="SUCCESS", request_job=report)
    def bare():
        yield RunRequest(run_key="one")
        yield RunRequest(run_key="two")

    repo = RepositoryDefinition("r", [bare])
    result = evaluate_run_status_sensor(repo, "bare", [run()])
    assert [r["run_key"] for r in result["run_requests"]] == ["one", "two"]


# --- contexts ------------------------------------------------------------------------------


def test_failure_context_carries_the_runs_error() -> None:
    got = []

    @run_failure_sensor
    def pager(context: RunFailureSensorContext):
        got.append((type(context), context.failure_event.message, context.dagster_run.error))

    repo = RepositoryDefinition("r", [etl, pager])
    error_map = {"type": "UserCodeError", "message": "ValueError: bad row", "traceback": "..."}
    evaluate_run_status_sensor(
        repo,
        "pager",
        [
            run("a", status="FAILURE", error="ValueError: bad row"),
            run("b", status="FAILURE", error=error_map),
        ],
    )
    assert got == [
        (RunFailureSensorContext, "ValueError: bad row", "ValueError: bad row"),
        (RunFailureSensorContext, "ValueError: bad row", "ValueError: bad row"),
    ]


def test_status_sensor_on_failure_gets_a_plain_status_context() -> None:
    got = []
    s = run_status_sensor(run_status="FAILURE", name="s")(lambda context: got.append(type(context)))
    evaluate_run_status_sensor(RepositoryDefinition("r", [s]), "s", [run(status="FAILURE")])
    assert got == [RunStatusSensorContext]


def test_run_maps_become_dagster_runs() -> None:
    got = []
    s = run_status_sensor(run_status="SUCCESS", name="s")(lambda context: got.append(context.run))
    evaluate_run_status_sensor(
        RepositoryDefinition("r", [s]),
        "s",
        [
            run(
                "id1",
                tags={"k": "v"},
                run_config={"ops": {"a": 1}},
                location="loc",
                repository="r",
            )
        ],
    )
    (dagster_run,) = got
    assert dagster_run == DagsterRun(
        job_name="etl",
        run_id="id1",
        run_config={"ops": {"a": 1}},
        status=DagsterRunStatus.SUCCESS,
        tags={"k": "v"},
        location="loc",
        repository="r",
    )
    assert dagster_run.status is DagsterRunStatus.SUCCESS and dagster_run.is_success


def test_build_run_status_sensor_context_for_unit_tests() -> None:
    @run_status_sensor(run_status=DagsterRunStatus.SUCCESS, request_job=report)
    def chain(context):
        if context.dagster_run.job_name != "report":
            return RunRequest(run_key=context.dagster_run.run_id)
        return SkipReason("no loops")

    context = build_run_status_sensor_context(
        sensor_name="chain",
        dagster_instance=None,
        dagster_run=DagsterRun(job_name="etl", run_id="r9", status=DagsterRunStatus.SUCCESS),
        dagster_event=None,
    )
    assert isinstance(context, RunStatusSensorContext)
    assert chain(context) == RunRequest(run_key="r9")
    looped = build_run_status_sensor_context(
        "chain", None, None, DagsterRun(job_name="report", status="SUCCESS")
    )
    assert chain(looped) == SkipReason("no loops")
    assert len(looped.run.run_id) == 32  # a fresh id when none is given


def test_failure_sensor_called_with_a_status_context_converts_it() -> None:
    @run_failure_sensor
    def pager(context):
        return (type(context).__name__, context.failure_event.message)

    context = build_run_status_sensor_context(
        sensor_name="pager",
        dagster_run=DagsterRun(job_name="etl", status=DagsterRunStatus.FAILURE, error="oom"),
    )
    assert pager(context) == ("RunFailureSensorContext", "oom")
    assert pager(context.for_run_failure()) == ("RunFailureSensorContext", "oom")

    class Event:
        message = "from Dagster's event"

    with_event = build_run_status_sensor_context(
        "pager", Event(), None, DagsterRun(job_name="etl", status="FAILURE")
    )
    assert pager(with_event) == ("RunFailureSensorContext", "from Dagster's event")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "dagster_run is required"),
        ({"dagster_run": {"job_name": "etl"}}, "dagster_run must be a DagsterRun"),
    ],
)
def test_build_context_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build_run_status_sensor_context(sensor_name="s", **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"job_name": "etl", "status": "DONE"}, "run_status must be a DagsterRunStatus"),
        ({"job_name": "etl", "tags": {"a": object()}}, "tag 'a'"),
        ({"job_name": "etl", "run_id": 5}, "run_id must be a str"),
        ({"job_name": "etl", "error": 5}, "error must be a str"),
        ({"job_name": "bad name"}, "job name 'bad name' is invalid"),
    ],
)
def test_dagster_run_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        DagsterRun(**kwargs)

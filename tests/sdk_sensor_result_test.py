"""Dagster's SensorResult: returned from a sensor, refused from a schedule."""

from __future__ import annotations

from typing import Any

import pytest

from workspace_manager import (
    DefinitionError,
    RepositoryDefinition,
    RunRequest,
    ScheduleDefinition,
    SensorResult,
    SkipReason,
    build_sensor_context,
    job,
    schedule,
    sensor,
)
from workspace_manager.sdk.evaluation import evaluate_schedule, evaluate_sensor


@job
def target():
    pass


def repo_with(*definitions: object) -> RepositoryDefinition:
    return RepositoryDefinition("repo", [target, *definitions])


def run_keys(result: dict) -> list:
    return [r["run_key"] for r in result["run_requests"]]


def test_sensor_result_requests_and_cursor() -> None:
    @sensor(job=target)
    def with_result(context):
        seen = int(context.cursor or 0)
        return SensorResult(
            run_requests=[RunRequest(run_key=f"k{seen}"), RunRequest(run_key=f"k{seen + 1}")],
            cursor=str(seen + 2),
        )

    repo = repo_with(with_result)
    first = evaluate_sensor(repo, "with_result")
    assert run_keys(first) == ["k0", "k1"]
    assert first["cursor"] == "2" and first["skip_reason"] is None
    second = evaluate_sensor(repo, "with_result", cursor=first["cursor"])
    assert run_keys(second) == ["k2", "k3"] and second["cursor"] == "4"


@pytest.mark.parametrize("skip", ["no new files", SkipReason("no new files")])
def test_sensor_result_skip_reason_str_or_skip_reason(skip: Any) -> None:
    s = sensor(job=target, name="s")(lambda: SensorResult(skip_reason=skip, cursor="c"))
    result = evaluate_sensor(repo_with(s), "s")
    assert result == {"run_requests": [], "skip_reason": "no new files", "cursor": "c"}


def test_sensor_result_without_cursor_keeps_the_cursor() -> None:
    s = sensor(job=target, name="s")(lambda: SensorResult(run_requests=[RunRequest("a")]))
    result = evaluate_sensor(repo_with(s), "s", cursor="kept")
    assert result["cursor"] == "kept" and run_keys(result) == ["a"]


def test_sensor_result_alone_in_a_generator_or_list() -> None:
    @sensor(job=target)
    def gen():
        yield SensorResult(run_requests=[RunRequest("g")], cursor="x")

    listed = sensor(job=target, name="listed")(lambda: [SensorResult(cursor="y")])
    repo = repo_with(gen, listed)
    assert evaluate_sensor(repo, "gen")["cursor"] == "x"
    assert run_keys(evaluate_sensor(repo, "gen")) == ["g"]
    assert evaluate_sensor(repo, "listed")["cursor"] == "y"


def test_sensor_result_mixed_with_yielded_requests_is_refused() -> None:
    @sensor(job=target)
    def mixed():
        yield RunRequest(run_key="a")
        yield SensorResult(cursor="b")

    with pytest.raises(DefinitionError, match="sensor 'mixed'.*SensorResult must be the only"):
        evaluate_sensor(repo_with(mixed), "mixed")


def test_cursor_set_two_ways_is_refused() -> None:
    @sensor(job=target)
    def both(context):
        context.update_cursor("one")
        return SensorResult(cursor="two")

    with pytest.raises(DefinitionError, match="sensor 'both' called context.update_cursor"):
        evaluate_sensor(repo_with(both), "both")


def test_update_cursor_and_a_sensor_result_without_cursor_is_fine() -> None:
    @sensor(job=target)
    def ok(context):
        context.update_cursor("one")
        return SensorResult(run_requests=[RunRequest("r")])

    assert evaluate_sensor(repo_with(ok), "ok")["cursor"] == "one"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"run_requests": [RunRequest("a")], "skip_reason": "x"}, "not both"),
        ({"run_requests": RunRequest("a")}, "run_requests must be a list"),
        ({"run_requests": ["a"]}, r"run_requests\[0\] is 'a', not a RunRequest"),
        ({"skip_reason": 3}, "skip_reason must be a str or a SkipReason"),
        ({"cursor": 5}, "cursor must be a str or None"),
        ({"asset_events": [object()]}, "asset_events= is not supported"),
        ({"dynamic_partitions_requests": [object()]}, "dynamic_partitions_requests="),
    ],
)
def test_sensor_result_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        SensorResult(**kwargs)


def test_sensor_result_value_semantics() -> None:
    assert SensorResult([RunRequest("a")], None, "c") == SensorResult(
        run_requests=[RunRequest("a")], cursor="c"
    )
    assert SensorResult(skip_reason="s").skip_reason == SkipReason("s")
    assert "cursor='c'" in repr(SensorResult(cursor="c"))


def test_direct_call_returns_the_sensor_result() -> None:
    @sensor(job=target)
    def direct(context):
        return SensorResult(run_requests=[RunRequest(run_key=context.cursor)], cursor="next")

    result = direct(build_sensor_context(cursor="k"))
    assert result == SensorResult(run_requests=[RunRequest("k")], cursor="next")


@pytest.mark.parametrize("as_generator", [False, True])
def test_schedules_refuse_a_sensor_result(as_generator: bool) -> None:
    if as_generator:

        def fn():
            yield SensorResult(run_requests=[RunRequest("a")])

    else:

        def fn():
            return SensorResult(run_requests=[RunRequest("a")])

    sched = schedule("0 * * * *", job=target, name="hourly")(fn)
    with pytest.raises(
        DefinitionError, match="schedule 'hourly' produced a SensorResult, which only"
    ):
        evaluate_schedule(repo_with(sched), "hourly", 0)


def test_schedule_execution_fn_refuses_a_sensor_result() -> None:
    sched = ScheduleDefinition(
        name="legacy", job=target, cron_schedule="@daily", execution_fn=lambda: SensorResult()
    )
    with pytest.raises(DefinitionError, match="only a sensor may return"):
        evaluate_schedule(repo_with(sched), "legacy", 0)


def test_build_contexts_accept_dagsters_instance_argument() -> None:
    import datetime as dt

    from workspace_manager import build_schedule_context

    sensor_context = build_sensor_context(instance=None, cursor="c", sensor_name="s")
    assert sensor_context.cursor == "c" and not sensor_context.cursor_updated
    sensor_context.update_cursor("d")
    assert sensor_context.cursor == "d" and sensor_context.cursor_updated
    when = dt.datetime(2024, 3, 1, 6, 30)
    schedule_context = build_schedule_context(instance=None, scheduled_execution_time=when)
    assert schedule_context.scheduled_execution_time == when.replace(tzinfo=dt.timezone.utc)

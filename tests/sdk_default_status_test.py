"""default_status on schedules and sensors, and Dagster's status enums (SPEC section 7)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import workspace_manager
import workspace_manager.sdk
from workspace_manager import (
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    DefinitionError,
    RepositoryDefinition,
    ScheduleDefinition,
    SensorDefinition,
    job,
    run_failure_sensor,
    run_status_sensor,
    schedule,
    sensor,
)
from workspace_manager.sdk.snapshot import repository_snapshot


@job
def nightly():
    pass


def test_enums_have_dagsters_names_and_values() -> None:
    assert [(m.name, m.value) for m in DefaultScheduleStatus] == [
        ("RUNNING", "RUNNING"),
        ("STOPPED", "STOPPED"),
    ]
    assert [(m.name, m.value) for m in DefaultSensorStatus] == [
        ("RUNNING", "RUNNING"),
        ("STOPPED", "STOPPED"),
    ]
    assert [m.value for m in DagsterRunStatus] == [
        "QUEUED",
        "STARTING",
        "STARTED",
        "SUCCESS",
        "FAILURE",
        "CANCELING",
        "CANCELED",
    ]
    # str enums: comparing with the plain name works, as a user's `status == "FAILURE"`
    assert DagsterRunStatus.FAILURE == "FAILURE"
    assert DefaultSensorStatus("RUNNING") is DefaultSensorStatus.RUNNING


@pytest.mark.parametrize(
    "name",
    [
        "DefaultScheduleStatus",
        "DefaultSensorStatus",
        "DagsterRunStatus",
        "SensorResult",
        "run_status_sensor",
        "run_failure_sensor",
        "RunStatusSensorContext",
        "RunFailureSensorContext",
        "RunStatusSensorDefinition",
        "DagsterRun",
        "build_run_status_sensor_context",
        "build_schedule_context",
        "build_sensor_context",
    ],
)
def test_dagster_names_are_exported_from_both_packages(name: str) -> None:
    assert getattr(workspace_manager, name) is getattr(workspace_manager.sdk, name)
    assert name in workspace_manager.__all__ and name in workspace_manager.sdk.__all__


MAKERS = {
    "ScheduleDefinition": lambda status: ScheduleDefinition(
        job=nightly, cron_schedule="0 2 * * *", default_status=status
    ),
    "@schedule": lambda status: schedule(
        "0 2 * * *", job=nightly, name="sch", default_status=status
    )(lambda: {}),
    "@sensor": lambda status: sensor(job=nightly, name="s", default_status=status)(lambda: None),
    "SensorDefinition": lambda status: SensorDefinition(
        lambda: None, job=nightly, name="s", default_status=status
    ),
    "@run_status_sensor": lambda status: run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS, name="s", default_status=status
    )(lambda context: None),
    "@run_failure_sensor": lambda status: run_failure_sensor(name="s", default_status=status)(
        lambda context: None
    ),
}


@pytest.mark.parametrize("maker", sorted(MAKERS))
@pytest.mark.parametrize(
    "given, expected",
    [
        (DefaultScheduleStatus.RUNNING, "RUNNING"),
        (DefaultScheduleStatus.STOPPED, "STOPPED"),
        (DefaultSensorStatus.RUNNING, "RUNNING"),
        (DefaultSensorStatus.STOPPED, "STOPPED"),
        ("RUNNING", "RUNNING"),
        ("stopped", "STOPPED"),
        ("Running", "RUNNING"),
        (None, None),
    ],
)
def test_default_status_shapes(maker: str, given: Any, expected: Any) -> None:
    definition = MAKERS[maker](given)
    if expected is None:
        assert definition.default_status is None
    else:
        assert definition.default_status == expected
        # the member of the definition's own enum, as Dagster's attribute is
        kind = DefaultScheduleStatus if "chedule" in maker else DefaultSensorStatus
        assert isinstance(definition.default_status, kind)


@pytest.mark.parametrize("maker", sorted(MAKERS))
@pytest.mark.parametrize("bad", ["ON", "", True, 1, DagsterRunStatus.STARTED, object()])
def test_bad_default_status_is_a_definition_error_naming_the_object(maker: str, bad: Any) -> None:
    make: Callable[[Any], Any] = MAKERS[maker]
    with pytest.raises(DefinitionError, match=r"(schedule|sensor) '\w+': default_status must be"):
        make(bad)


def test_snapshot_carries_default_status_and_schedule_tags() -> None:
    running = ScheduleDefinition(
        name="running",
        job=nightly,
        cron_schedule="0 2 * * *",
        default_status=DefaultScheduleStatus.RUNNING,
        tags={"team": "a", "priority": 3},
    )
    unset = ScheduleDefinition(name="unset", job=nightly, cron_schedule="0 3 * * *")
    on = sensor(job=nightly, name="on", default_status="running")(lambda: None)
    off = sensor(job=nightly, name="off", default_status=DefaultSensorStatus.STOPPED)(lambda: None)
    snap = repository_snapshot(RepositoryDefinition("r", [running, unset, on, off]))
    schedules = {s["name"]: s for s in snap["schedules"]}
    assert schedules["running"]["default_status"] == "RUNNING"
    assert type(schedules["running"]["default_status"]) is str  # plain, for msgpack and JSON
    assert schedules["running"]["tags"] == {"team": "a", "priority": "3"}
    assert schedules["unset"]["default_status"] is None
    assert schedules["unset"]["tags"] == {}
    sensors = {s["name"]: s for s in snap["sensors"]}
    assert sensors["on"]["default_status"] == "RUNNING"
    assert sensors["off"]["default_status"] == "STOPPED"
    assert type(sensors["off"]["default_status"]) is str


def test_enum_members_read_as_their_value_and_travel_as_plain_str() -> None:
    from workspace_manager import RunRequest
    from workspace_manager.protocol import purepack

    assert str(DagsterRunStatus.FAILURE) == "FAILURE"
    assert f"{DagsterRunStatus.FAILURE}|{DefaultSensorStatus.RUNNING:>8}" == "FAILURE| RUNNING"
    request = RunRequest(
        tags={"upstream": DagsterRunStatus.FAILURE},
        run_config={"statuses": [DagsterRunStatus.SUCCESS], "s": DefaultScheduleStatus.STOPPED},
    )
    as_dict = request.to_dict("job")
    assert type(as_dict["tags"]["upstream"]) is str
    assert type(as_dict["run_config"]["statuses"][0]) is str
    # the pure-Python codec (used where there is no msgpack) sends the value, not the name
    packed = purepack.unpackb(purepack.packb(as_dict))
    assert packed["tags"] == {"upstream": "FAILURE"}
    assert packed["run_config"] == {"statuses": ["SUCCESS"], "s": "STOPPED"}

from __future__ import annotations

import datetime as dt
import time

import pytest

from workspace_manager import (
    DefinitionError,
    RepositoryDefinition,
    RunRequest,
    ScheduleDefinition,
    SkipReason,
    job,
    sensor,
)
from workspace_manager.sdk import NotFoundError, schedule
from workspace_manager.sdk.evaluation import (
    evaluate_schedule,
    evaluate_sensor,
    execute_job,
    select_repository,
)


@job
def main_job():
    return {"rows": 3}


@job
def side_job(context):
    return context.run_config


def repo_with(*definitions: object, name: str = "repo") -> RepositoryDefinition:
    return RepositoryDefinition(name, [main_job, side_job, *definitions])


# --- sensors ----------------------------------------------------------------------------


def test_generator_sensor_with_defaults() -> None:
    @sensor(job=main_job)
    def gen():
        yield RunRequest(run_key="a")
        yield RunRequest(run_key="b", run_config={"x": 1}, tags={"t": "v"})

    result = evaluate_sensor(repo_with(gen), "gen")
    assert result == {
        "run_requests": [
            {"run_key": "a", "run_config": {}, "tags": {}, "job_name": "main_job"},
            {"run_key": "b", "run_config": {"x": 1}, "tags": {"t": "v"}, "job_name": "main_job"},
        ],
        "skip_reason": None,
        "cursor": None,
    }


@pytest.mark.parametrize(
    "produce, keys, skip",
    [
        (lambda: RunRequest(run_key="one"), ["one"], None),
        (lambda: [RunRequest(run_key="x"), RunRequest(run_key="y")], ["x", "y"], None),
        (lambda: (RunRequest(run_key="t"),), ["t"], None),
        (lambda: None, [], None),
        (lambda: [], [], None),
        (lambda: SkipReason("nothing new"), [], "nothing new"),
        (lambda: [SkipReason("in a list")], [], "in a list"),
        (lambda: SkipReason(), [], None),
    ],
)
def test_sensor_return_forms(produce, keys, skip) -> None:
    s = sensor(job=main_job, name="s")(produce)
    result = evaluate_sensor(repo_with(s), "s")
    assert [r["run_key"] for r in result["run_requests"]] == keys
    assert result["skip_reason"] == skip


@pytest.mark.parametrize(
    "produce, message",
    [
        (lambda: [RunRequest(), SkipReason("no")], r"produced 1 RunRequest\(s\) and 1 SkipReason"),
        (
            lambda: [SkipReason("a"), SkipReason("b")],
            r"produced 0 RunRequest\(s\) and 2 SkipReason",
        ),
        (lambda: [RunRequest(), "oops"], "produced 'oops' at position 1"),
        (lambda: {"a": 1}, r"returned \{'a': 1\}; expected RunRequest"),
        (lambda: "run", "returned 'run'"),
    ],
)
def test_sensor_bad_output(produce, message) -> None:
    s = sensor(job=main_job, name="s")(produce)
    with pytest.raises(DefinitionError, match=f"sensor 's' {message}"):
        evaluate_sensor(repo_with(s), "s")


def test_sensor_cursor_round_trip() -> None:
    @sensor(job=main_job)
    def counting(context):
        seen = int(context.cursor or 0)
        yield RunRequest(run_key=f"file-{seen + 1}")
        context.update_cursor(str(seen + 1))  # after a yield: the generator is consumed

    repo = repo_with(counting)
    first = evaluate_sensor(repo, "counting")
    assert first["cursor"] == "1"
    second = evaluate_sensor(repo, "counting", cursor=first["cursor"])
    assert second["cursor"] == "2"
    assert second["run_requests"][0]["run_key"] == "file-2"


def test_cursor_passes_through_unchanged_and_can_be_cleared() -> None:
    @sensor(job=main_job)
    def keeps():
        pass

    @sensor(job=main_job)
    def clears(context):
        context.update_cursor(None)

    repo = repo_with(keeps, clears)
    assert evaluate_sensor(repo, "keeps", cursor="c7")["cursor"] == "c7"
    assert evaluate_sensor(repo, "clears", cursor="c7")["cursor"] is None


def test_sensor_context_fields() -> None:
    seen = {}

    @sensor(job=main_job)
    def look(context):
        seen.update(
            cursor=context.cursor,
            last_run_key=context.last_run_key,
            repository_name=context.repository_name,
            sensor_name=context.sensor_name,
        )

    evaluate_sensor(repo_with(look, name="team"), "look", cursor="c", last_run_key="k9")
    assert seen == {
        "cursor": "c",
        "last_run_key": "k9",
        "repository_name": "team",
        "sensor_name": "look",
    }


def test_cursor_must_be_a_string() -> None:
    @sensor(job=main_job)
    def numeric(context):
        context.update_cursor(5)

    with pytest.raises(DefinitionError, match="sensor 'numeric': a cursor must be a str"):
        evaluate_sensor(repo_with(numeric), "numeric")


def test_request_for_another_job_in_the_repository() -> None:
    @sensor(job=main_job)
    def both():
        return [RunRequest(run_key="m"), RunRequest(run_key="s", job_name="side_job")]

    result = evaluate_sensor(repo_with(both), "both")
    assert [r["job_name"] for r in result["run_requests"]] == ["main_job", "side_job"]


def test_request_for_a_job_outside_the_repository() -> None:
    @sensor(job=main_job)
    def stray():
        return RunRequest(job_name="elsewhere")

    with pytest.raises(DefinitionError, match="sensor 'stray' requested a run of job 'elsewhere'"):
        evaluate_sensor(repo_with(stray), "stray")


def test_sensor_exceptions_propagate_unchanged() -> None:
    error = KeyError("mine")

    @sensor(job=main_job)
    def failing():
        yield RunRequest()
        raise error

    with pytest.raises(KeyError) as info:
        evaluate_sensor(repo_with(failing), "failing")
    assert info.value is error
    assert not isinstance(info.value, NotFoundError)


def test_unknown_sensor() -> None:
    with pytest.raises(NotFoundError, match="no sensor named 'ghost'"):
        evaluate_sensor(repo_with(), "ghost")


# --- schedules --------------------------------------------------------------------------


def test_schedule_without_function_uses_its_config_and_tags() -> None:
    s = ScheduleDefinition(
        job=main_job, cron_schedule="@daily", run_config={"a": 1}, tags={"kind": "nightly"}
    )
    assert evaluate_schedule(repo_with(s), "main_job_schedule", 0.0) == {
        "run_requests": [
            {
                "run_key": None,
                "run_config": {"a": 1},
                "tags": {"kind": "nightly"},
                "job_name": "main_job",
            }
        ],
        "skip_reason": None,
    }


def test_schedule_context_time_is_in_its_zone() -> None:
    seen = []

    @schedule("0 9 * * *", job=main_job, execution_timezone="America/New_York")
    def morning(context):
        seen.append(context.scheduled_execution_time)

    @schedule("0 9 * * *", job=main_job)
    def utc(context):
        seen.append(context.scheduled_execution_time)

    repo = repo_with(morning, utc)
    moment = dt.datetime(2024, 7, 1, 13, 0, tzinfo=dt.timezone.utc).timestamp()
    evaluate_schedule(repo, "morning", moment)
    evaluate_schedule(repo, "utc", moment)
    local, in_utc = seen
    assert (local.hour, local.utcoffset()) == (9, dt.timedelta(hours=-4))
    assert (in_utc.hour, in_utc.utcoffset()) == (13, dt.timedelta(0))
    assert local == in_utc


def test_schedule_time_defaults_to_now() -> None:
    seen = []

    @schedule("@hourly", job=main_job)
    def now(context):
        seen.append(context.scheduled_execution_time.timestamp())

    before = time.time()
    evaluate_schedule(repo_with(now), "now")
    assert before <= seen[0] <= time.time()


def test_schedule_function_forms() -> None:
    @schedule("@hourly", job=main_job, tags={"from": "schedule", "x": "s"})
    def requests(context):
        hour = context.scheduled_execution_time.hour
        yield RunRequest(run_key=f"h{hour}", tags={"x": "r"})

    @schedule("@hourly", job=side_job)
    def config_dict():
        return {"ops": {"n": 1}}

    @schedule("@hourly", job=main_job)
    def skip():
        return SkipReason("holiday")

    legacy = ScheduleDefinition(
        job=main_job,
        cron_schedule="@daily",
        name="legacy",
        run_config_fn=lambda context: {"date": context.scheduled_execution_time.date().isoformat()},
    )
    repo = repo_with(requests, config_dict, skip, legacy)
    at = dt.datetime(2024, 1, 2, 5, tzinfo=dt.timezone.utc).timestamp()

    assert evaluate_schedule(repo, "requests", at)["run_requests"] == [
        {
            "run_key": "h5",
            "run_config": {},
            "tags": {"from": "schedule", "x": "r"},
            "job_name": "main_job",
        }
    ]
    assert evaluate_schedule(repo, "config_dict", at)["run_requests"][0]["run_config"] == {
        "ops": {"n": 1}
    }
    assert evaluate_schedule(repo, "config_dict", at)["run_requests"][0]["job_name"] == "side_job"
    assert evaluate_schedule(repo, "skip", at) == {"run_requests": [], "skip_reason": "holiday"}
    assert evaluate_schedule(repo, "legacy", at)["run_requests"][0]["run_config"] == {
        "date": "2024-01-02"
    }


def test_run_config_fn_must_return_a_dict() -> None:
    s = ScheduleDefinition(job=main_job, cron_schedule="@daily", run_config_fn=lambda: [1])
    with pytest.raises(DefinitionError, match="run_config_fn returned \\[1\\], not a dict"):
        evaluate_schedule(repo_with(s), "main_job_schedule")


def test_unknown_schedule() -> None:
    with pytest.raises(NotFoundError, match="no schedule named 'ghost'"):
        evaluate_schedule(repo_with(), "ghost")


# --- jobs -------------------------------------------------------------------------------


def test_execute_job() -> None:
    repo = repo_with()
    assert execute_job(repo, "main_job") == {"success": True, "result": {"rows": 3}}
    assert execute_job(repo, "side_job", {"k": [1, 2]}) == {
        "success": True,
        "result": {"k": [1, 2]},
    }
    assert execute_job(repo, "side_job") == {"success": True, "result": {}}


def test_unserialisable_result_becomes_its_repr() -> None:
    marker = object()
    j = job(name="odd")(lambda: {"obj": marker})
    result = execute_job(RepositoryDefinition("r", [j]), "odd")
    assert result == {"success": True, "result": repr({"obj": marker})}


def test_execute_job_checks_run_config() -> None:
    with pytest.raises(DefinitionError, match="job 'side_job': run_config must be a dict"):
        execute_job(repo_with(), "side_job", ["not", "a", "dict"])  # type: ignore[arg-type]


def test_job_exceptions_propagate_unchanged() -> None:
    j = job(name="bad")(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        execute_job(RepositoryDefinition("r", [j]), "bad")


def test_unknown_job() -> None:
    with pytest.raises(NotFoundError, match="no job named 'ghost'"):
        execute_job(repo_with(), "ghost")


# --- choosing a repository ------------------------------------------------------------


def test_select_repository() -> None:
    w = sensor(job=main_job, name="w")(lambda: None)
    a = RepositoryDefinition("a", [main_job, w])
    b = RepositoryDefinition("b", [side_job, w])
    c = RepositoryDefinition("c", [side_job])
    assert select_repository([a, b], "b") is b
    assert select_repository([c], kind="sensor", name="anything") is c
    assert select_repository([c]) is c
    assert select_repository([a, c], kind="sensor", name="w") is a
    assert select_repository([a, c], kind="job", name="side_job") is c
    with pytest.raises(NotFoundError, match="no repository named 'z' \\(known: a, b\\)"):
        select_repository([a, b], "z")
    with pytest.raises(NotFoundError, match="exists in several repositories \\(a, b\\)"):
        select_repository([a, b], kind="sensor", name="w")
    with pytest.raises(NotFoundError, match="no repository here has a schedule named 'q'"):
        select_repository([a, b], kind="schedule", name="q")
    with pytest.raises(NotFoundError, match="2 repositories here"):
        select_repository([a, b])

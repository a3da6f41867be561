from __future__ import annotations

import pytest

from workspace_manager import (
    DefinitionError,
    JobDefinition,
    RepositoryDefinition,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SkipReason,
    job,
    repository,
    sensor,
)
from workspace_manager.sdk import JobContext, NotFoundError, schedule
from workspace_manager.sdk import timezones as tz_module


@job
def plain_job():
    """Does plain things."""
    return 1


@job(name="named_job", description="explicit", tags={"team": "a"})
def _named():
    return 2


# --- jobs -------------------------------------------------------------------------------


def test_bare_job_takes_name_and_docstring() -> None:
    assert isinstance(plain_job, JobDefinition)
    assert plain_job.name == "plain_job"
    assert plain_job.description == "Does plain things."
    assert plain_job.tags == {}
    assert plain_job() == 1  # still callable, for unit tests of user code


def test_job_with_arguments() -> None:
    assert _named.name == "named_job"
    assert _named.description == "explicit"
    assert _named.tags == {"team": "a"}


def test_job_called_with_empty_parentheses() -> None:
    @job()
    def empty_parens():
        pass

    assert empty_parens.name == "empty_parens"
    assert empty_parens.description is None


def test_job_context_is_optional() -> None:
    @job
    def with_context(context):
        return (context.job_name, context.run_config)

    @job
    def with_star_args(*args):
        return args[0].run_config

    @job
    def defaulted(x=5):
        return x

    assert with_context.takes_context and with_star_args.takes_context
    assert not plain_job.takes_context and not defaulted.takes_context
    assert with_context.execute({"a": 1}) == ("with_context", {"a": 1})
    assert with_star_args.execute() == {}
    assert defaulted.execute() == 5
    assert plain_job.execute({"ignored": True}) == 1


def test_job_context_type() -> None:
    seen = []

    @job
    def capture(ctx):
        seen.append(ctx)

    capture.execute({"k": "v"})
    assert isinstance(seen[0], JobContext)
    assert "capture" in repr(seen[0])


@pytest.mark.parametrize(
    "source, message",
    [
        ("def two(a, b): pass", "requires a, b"),
        ("def kw(*, a): pass", "requires a"),
    ],
)
def test_job_with_too_many_parameters(source: str, message: str) -> None:
    namespace: dict = {}
    exec(source, namespace)
    fn = [v for k, v in namespace.items() if k != "__builtins__"][0]
    with pytest.raises(DefinitionError) as info:
        job(fn)
    assert f"job {fn.__name__!r}" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize("name", ["has space", "", "dash-ed", "<lambda>", "trailing\n", 5])
def test_invalid_job_names(name: object) -> None:
    with pytest.raises(DefinitionError, match="job name .* is invalid"):
        job(name=name)(lambda: None)  # type: ignore[arg-type]


def test_lambda_needs_a_name() -> None:
    with pytest.raises(DefinitionError, match="'<lambda>'"):
        job(lambda: None)
    assert job(name="ok")(lambda: 3).execute() == 3


@pytest.mark.parametrize(
    "tags", [{1: "a"}, ["a"], "a=b", {"a": object()}, {"a": (1, 2)}, {"a": float("nan")}]
)
def test_job_tags_must_be_str_keys_and_json_values(tags: object) -> None:
    with pytest.raises(DefinitionError, match="job 'tagged'"):

        @job(tags=tags)  # type: ignore[arg-type]
        def tagged():
            pass


def test_job_rejects_non_function_and_double_decoration() -> None:
    with pytest.raises(DefinitionError, match=r"use @job\(name=...\)"):
        job("a_name")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="already a job"):
        job(plain_job)
    with pytest.raises(DefinitionError, match="description must be a str"):
        job(name="d", description=3)(lambda: None)  # type: ignore[arg-type]


# --- run requests and skip reasons -----------------------------------------------------


def test_run_request_defaults_and_equality() -> None:
    request = RunRequest()
    assert (request.run_key, request.run_config, request.tags, request.job_name) == (
        None,
        {},
        {},
        None,
    )
    assert RunRequest("k", {"a": [1]}) == RunRequest(run_key="k", run_config={"a": [1]})
    assert RunRequest("k") != RunRequest("j")
    assert "run_key='k'" in repr(RunRequest("k"))


def test_run_request_makes_config_plain() -> None:
    from collections import OrderedDict

    config = OrderedDict(a=(1, 2), b={"c": b"x"})
    request = RunRequest(run_config=config)
    assert type(request.run_config) is dict
    assert request.run_config == {"a": [1, 2], "b": {"c": b"x"}}
    config["a"] = "changed"
    assert request.run_config["a"] == [1, 2]  # a copy, not a view


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"run_key": 5}, "run_key must be a str"),
        ({"run_config": [1]}, "run_config must be a dict"),
        ({"run_config": {"a": object()}}, r"run_config\['a'\]"),
        ({"run_config": {1: "a"}}, "non-str key 1"),
        ({"run_config": {"big": 2**70}}, "does not fit in 64 bits"),
        ({"tags": {"a": object()}}, "is not a str or a JSON value"),
        ({"job_name": 3}, "job_name must be a str"),
    ],
)
def test_run_request_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        RunRequest(**kwargs)


def test_self_containing_config_is_rejected_cleanly() -> None:
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(DefinitionError, match="nested too deeply"):
        RunRequest(run_config=loop)


def test_skip_reason() -> None:
    assert SkipReason("x").skip_message == "x"
    assert SkipReason().skip_message is None
    assert SkipReason("x") == SkipReason("x")
    with pytest.raises(DefinitionError):
        SkipReason(3)  # type: ignore[arg-type]


# --- sensors ----------------------------------------------------------------------------


def test_sensor_definition() -> None:
    @sensor(job=plain_job, minimum_interval_seconds=5)
    def watch(context):
        """Watches."""

    assert isinstance(watch, SensorDefinition)
    assert (watch.name, watch.job_name, watch.minimum_interval_seconds) == ("watch", "plain_job", 5)
    assert watch.description == "Watches."
    assert watch.takes_context

    @sensor(job=plain_job, name="renamed", description="d")
    def other():
        pass

    assert (other.name, other.description, other.minimum_interval_seconds) == ("renamed", "d", 30)
    assert not other.takes_context


def test_bare_sensor_needs_a_job() -> None:
    with pytest.raises(DefinitionError, match=r"sensor 'lonely': no job given.*@sensor\(job="):

        @sensor
        def lonely():
            pass

    with pytest.raises(DefinitionError, match="sensor 'lonely2': no job given"):

        @sensor()
        def lonely2():
            pass


def test_sensor_targeting_a_plain_function() -> None:
    def not_a_job():
        pass

    with pytest.raises(DefinitionError) as info:

        @sensor(job=not_a_job)  # type: ignore[arg-type]
        def watcher():
            pass

    message = str(info.value)
    assert "sensor 'watcher'" in message and "not_a_job" in message and "@job" in message


@pytest.mark.parametrize("interval", [0, -1, True, "30", None])
def test_sensor_interval_must_be_positive(interval: object) -> None:
    with pytest.raises(DefinitionError, match="sensor 'ticker': minimum_interval_seconds"):

        @sensor(job=plain_job, minimum_interval_seconds=interval)  # type: ignore[arg-type]
        def ticker():
            pass


# --- schedules --------------------------------------------------------------------------


def test_schedule_defaults() -> None:
    s = ScheduleDefinition(job=plain_job, cron_schedule="@daily")
    assert (s.name, s.job_name, s.cron_schedule) == ("plain_job_schedule", "plain_job", "@daily")
    assert (s.execution_timezone, s.description, s.run_config, s.tags) == (None, None, {}, {})


def test_schedule_full() -> None:
    s = ScheduleDefinition(
        job=plain_job,
        cron_schedule="*/5 9-17 * * mon-fri",
        name="office_hours",
        execution_timezone="Europe/Paris",
        description="d",
        run_config={"x": 1},
        tags={"k": "v"},
    )
    assert (s.name, s.execution_timezone, s.run_config, s.tags) == (
        "office_hours",
        "Europe/Paris",
        {"x": 1},
        {"k": "v"},
    )


def test_schedule_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        ScheduleDefinition(plain_job, "@daily")  # type: ignore[misc]


def test_bad_cron_names_the_schedule() -> None:
    with pytest.raises(DefinitionError) as info:
        ScheduleDefinition(job=plain_job, cron_schedule="0 25 * * *", name="nightly")
    message = str(info.value)
    assert "schedule 'nightly'" in message and "'0 25 * * *'" in message
    assert "hour field: 25 is out of range" in message
    with pytest.raises(DefinitionError, match="schedule 'plain_job_schedule'"):
        ScheduleDefinition(job=plain_job, cron_schedule=None)  # type: ignore[arg-type]


def test_bad_timezone_names_the_schedule() -> None:
    with pytest.raises(DefinitionError, match="schedule 'tz': execution_timezone 'Mars/Olympus'"):
        ScheduleDefinition(
            job=plain_job, cron_schedule="@daily", name="tz", execution_timezone="Mars/Olympus"
        )
    with pytest.raises(DefinitionError, match="not a valid time zone"):
        ScheduleDefinition(job=plain_job, cron_schedule="@daily", execution_timezone="../etc")
    with pytest.raises(DefinitionError, match="must be a str"):
        ScheduleDefinition(job=plain_job, cron_schedule="@daily", execution_timezone=1)  # type: ignore[arg-type]


def test_timezone_accepted_when_no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoDatabase:
        class ZoneInfoNotFoundError(KeyError):
            pass

        def ZoneInfo(self, key: str) -> None:  # noqa: N802 - mimics zoneinfo
            raise self.ZoneInfoNotFoundError(key)

    monkeypatch.setattr(tz_module, "_zoneinfo_module", NoDatabase)
    s = ScheduleDefinition(job=plain_job, cron_schedule="@daily", execution_timezone="Mars/X")
    assert s.execution_timezone == "Mars/X"


def test_schedule_target_must_be_a_job() -> None:
    def not_a_job():
        pass

    with pytest.raises(DefinitionError, match="schedule 'named': job must be a @job"):
        ScheduleDefinition(job=not_a_job, cron_schedule="@daily", name="named")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match=r"cron_schedule='@daily'\): job must be a @job"):
        ScheduleDefinition(job=not_a_job, cron_schedule="@daily")  # type: ignore[arg-type]


def test_schedule_takes_one_way_of_making_config() -> None:
    with pytest.raises(DefinitionError, match="at most one of run_config, execution_fn"):
        ScheduleDefinition(
            job=plain_job, cron_schedule="@daily", run_config={}, execution_fn=lambda: None
        )
    with pytest.raises(DefinitionError, match="requires a, b"):
        ScheduleDefinition(job=plain_job, cron_schedule="@daily", run_config_fn=lambda a, b: {})


def test_schedule_decorator() -> None:
    @schedule("0 * * * *", job=plain_job, execution_timezone="UTC", tags={"t": "1"})
    def hourly(context):
        """Every hour."""
        return {}

    assert isinstance(hourly, ScheduleDefinition)
    assert (hourly.name, hourly.description, hourly.tags) == ("hourly", "Every hour.", {"t": "1"})
    assert hourly.takes_context
    with pytest.raises(DefinitionError, match="schedule 'broken': invalid cron_schedule"):

        @schedule("every hour", job=plain_job)
        def broken():
            pass


# --- repositories -----------------------------------------------------------------------


def _jobs(n: int) -> list:
    return [job(name=f"j{i}")(lambda: None) for i in range(n)]


def test_repository_adds_target_jobs_in_order() -> None:
    j0, j1, j2 = _jobs(3)
    s = ScheduleDefinition(job=j1, cron_schedule="@hourly")

    @sensor(job=j2)
    def watch():
        pass

    @repository
    def repo():
        """The repo."""
        return [j0, s, watch, j2, j1]

    assert isinstance(repo, RepositoryDefinition)
    assert repo.name == "repo" and repo.description == "The repo."
    assert [j.name for j in repo.jobs] == ["j0", "j1", "j2"]
    assert repo.schedules == [s] and repo.sensors == [watch]
    assert repo.get_job("j2") is j2 and repo.get_sensor("watch") is watch
    assert repo.has_schedule("j1_schedule") and not repo.has_schedule("j0_schedule")
    assert "3 jobs, 1 schedules, 1 sensors" in repr(repo)


def test_repository_with_name_and_description() -> None:
    @repository(name="other", description="desc")
    def repo():
        """Ignored."""
        return (plain_job,)

    assert (repo.name, repo.description, [j.name for j in repo.jobs]) == (
        "other",
        "desc",
        ["plain_job"],
    )


def test_repository_lookup_failure_is_not_found() -> None:
    @repository
    def repo():
        return [plain_job]

    with pytest.raises(NotFoundError, match="repository 'repo' has no job named 'nope'.*plain_job"):
        repo.get_job("nope")
    with pytest.raises(LookupError, match="no sensor named 'x'.*none"):
        repo.get_sensor("x")
    with pytest.raises(NotFoundError):
        repo.get_schedule(None)  # type: ignore[arg-type]


def test_same_object_twice_is_kept_once() -> None:
    @repository
    def repo():
        return [plain_job, plain_job]

    assert repo.jobs == [plain_job]


def test_duplicate_job_names() -> None:
    other = job(name="plain_job")(lambda: None)
    with pytest.raises(DefinitionError) as info:

        @repository
        def dup_jobs():
            return [plain_job, other]

    assert "repository 'dup_jobs'" in str(info.value)
    assert "two different jobs are named 'plain_job'" in str(info.value)


def test_duplicate_job_name_through_a_target() -> None:
    other = job(name="plain_job")(lambda: None)
    s = ScheduleDefinition(job=other, cron_schedule="@daily", name="sched")
    with pytest.raises(
        DefinitionError, match="named 'plain_job' \\(the target of schedule 'sched'\\)"
    ):
        RepositoryDefinition("r", [plain_job, s])


def test_duplicate_schedule_and_sensor_names() -> None:
    s1 = ScheduleDefinition(job=plain_job, cron_schedule="@daily", name="s")
    s2 = ScheduleDefinition(job=plain_job, cron_schedule="@hourly", name="s")
    with pytest.raises(DefinitionError, match="two different schedules are named 's'"):
        RepositoryDefinition("r", [s1, s2])
    sensors = [sensor(job=plain_job, name="w")(lambda: None) for _ in range(2)]
    with pytest.raises(DefinitionError, match="two different sensors are named 'w'"):
        RepositoryDefinition("r", sensors)


def test_schedule_and_sensor_may_share_a_name() -> None:
    s = ScheduleDefinition(job=plain_job, cron_schedule="@daily", name="x")
    w = sensor(job=plain_job, name="x")(lambda: None)
    repo = RepositoryDefinition("r", [s, w])
    assert repo.get_schedule("x") is s and repo.get_sensor("x") is w


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("job1", "item 1 of its list, 'job1', is not a job"),
        (42, "item 1 of its list, 42,"),
        ([plain_job], "item 1 of its list, [<JobDefinition 'plain_job'>]"),
    ],
)
def test_unknown_objects_are_named(item: object, fragment: str) -> None:
    with pytest.raises(DefinitionError) as info:
        RepositoryDefinition("r", [plain_job, item])
    assert "repository 'r'" in str(info.value) and fragment in str(info.value)


def test_undecorated_function_gets_a_hint() -> None:
    def forgot():
        pass

    with pytest.raises(DefinitionError, match=r"item 0 .*forgot.*did you forget @job\?"):

        @repository
        def repo():
            return [forgot]


def test_repository_must_return_a_list() -> None:
    with pytest.raises(DefinitionError, match="repository 'r' must return a list"):

        @repository(name="r")
        def repo():
            return "jobs"


def test_repository_function_takes_no_arguments() -> None:
    with pytest.raises(DefinitionError, match="repository 'repo': the function must take no"):

        @repository
        def repo(context):
            return []


def test_repository_name_is_checked() -> None:
    with pytest.raises(DefinitionError, match="repository name 'a b' is invalid"):
        RepositoryDefinition("a b", [])


def test_repository_function_errors_propagate_unchanged() -> None:
    boom = ZeroDivisionError("boom")

    def raising():
        raise boom

    with pytest.raises(ZeroDivisionError) as info:
        repository(raising)
    assert info.value is boom


def test_empty_repository_is_allowed() -> None:
    @repository
    def empty():
        return []

    assert (empty.jobs, empty.schedules, empty.sensors) == ([], [], [])

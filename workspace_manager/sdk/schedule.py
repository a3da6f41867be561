"""`ScheduleDefinition` and `@schedule`: run a job on a cron schedule.

Three ways to say what a tick requests, at most one per schedule:
- nothing: one RunRequest with the schedule's `run_config` and `tags`;
- `run_config_fn(context)` returning a run_config dict (Dagster's older style);
- `execution_fn(context)`, or the function under `@schedule(...)`, returning or yielding
  RunRequest(s), a SkipReason, a run_config dict, or None.
The function's `context` (a `ScheduleContext`) is optional, as for jobs and sensors.
A schedule's first state is `default_status` (Dagster's `DefaultScheduleStatus`, or
"RUNNING"/"STOPPED"); None leaves it to the workspace's `daemon.default_status`.
"""

from __future__ import annotations

from collections.abc import Mapping

from .callables import getdoc
from .context import ScheduleContext, call, wants_context
from .cron import CronError, parse_cron
from .errors import DefinitionError
from .job import JobDefinition
from .run_requests import RunRequest, SkipReason, collect_requests
from .sensor import resolve_target
from .status import DefaultScheduleStatus, check_default_status
from .timezones import get_timezone, timezone_problem
from .values import check_description, check_name, check_tags, plain_config

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple


class ScheduleDefinition:
    """A named cron schedule for one job, checked completely when it is created."""

    def __init__(
        self,
        name: Optional[str] = None,
        *,
        cron_schedule: str,
        job_name: Optional[str] = None,
        job: Optional[JobDefinition] = None,
        execution_timezone: Optional[str] = None,
        description: Optional[str] = None,
        run_config: Optional[Mapping[str, Any]] = None,
        tags: Optional[Mapping[str, Any]] = None,
        run_config_fn: Optional[Callable[..., Any]] = None,
        execution_fn: Optional[Callable[..., Any]] = None,
        default_status: Any = None,
    ) -> None:
        if name is None:
            if isinstance(job, JobDefinition):
                name = f"{job.name}_schedule"
            elif isinstance(job_name, str) and job is None:
                name = f"{job_name}_schedule"  # Dagster's default name too
            else:
                resolve_target(
                    job, job_name, f"ScheduleDefinition(cron_schedule={cron_schedule!r})"
                )
        self.name: str = check_name(name, "schedule")
        owner = f"schedule {self.name!r}"
        self.job: Optional[JobDefinition]
        self.job, self.job_name = resolve_target(job, job_name, owner)
        try:
            parse_cron(cron_schedule)
        except CronError as exc:
            raise DefinitionError(
                f"{owner}: invalid cron_schedule {cron_schedule!r}: {exc}"
            ) from None
        self.cron_schedule: str = cron_schedule.strip()
        if execution_timezone is not None:
            if not isinstance(execution_timezone, str):
                raise DefinitionError(
                    f"{owner}: execution_timezone must be a str, got {execution_timezone!r}"
                )
            problem = timezone_problem(execution_timezone)
            if problem:
                raise DefinitionError(
                    f"{owner}: execution_timezone {execution_timezone!r}: {problem}"
                )
        self.execution_timezone = execution_timezone
        self.default_status: Optional[DefaultScheduleStatus] = check_default_status(
            default_status, owner, DefaultScheduleStatus
        )
        given = [
            label
            for label, value in (
                ("run_config", run_config),
                ("run_config_fn", run_config_fn),
                ("execution_fn", execution_fn),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise DefinitionError(f"{owner}: give at most one of {', '.join(given)}")
        self.run_config: Dict[str, Any] = plain_config(run_config, owner)
        self.tags: Dict[str, str] = check_tags(tags, owner)
        self.run_config_fn = run_config_fn
        self.execution_fn = execution_fn
        fn = run_config_fn if run_config_fn is not None else execution_fn
        self.takes_context: bool = wants_context(fn, owner) if fn is not None else False
        if description is None and execution_fn is not None:
            description = getdoc(execution_fn)
        self.description: Optional[str] = check_description(description, owner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the schedule's own function directly, as in a unit test."""
        fn = self.execution_fn if self.execution_fn is not None else self.run_config_fn
        if fn is None:
            raise DefinitionError(f"schedule {self.name!r} has no function to call")
        return fn(*args, **kwargs)

    def context_for(
        self, scheduled_time: float, repository_name: Optional[str] = None
    ) -> ScheduleContext:
        """A context whose time is aware, in the schedule's zone (UTC if none)."""
        import datetime as _dt

        zone = get_timezone(self.execution_timezone)
        when = _dt.datetime.fromtimestamp(scheduled_time, tz=zone)
        return ScheduleContext(self.name, when, repository_name)

    def evaluate(self, context: ScheduleContext) -> Tuple[List[RunRequest], Optional[SkipReason]]:
        owner = f"schedule {self.name!r}"
        if self.run_config_fn is not None:
            config = call(self.run_config_fn, self.takes_context, context)
            if not isinstance(config, Mapping):
                raise DefinitionError(f"{owner}: run_config_fn returned {config!r}, not a dict")
            return [RunRequest(run_config=config)], None
        if self.execution_fn is not None:
            result = call(self.execution_fn, self.takes_context, context)
            return collect_requests(result, owner, allow_config=True)
        return [RunRequest(run_config=self.run_config)], None

    def __repr__(self) -> str:
        return f"<ScheduleDefinition {self.name!r} {self.cron_schedule!r} -> job {self.job_name!r}>"


def schedule(
    cron_schedule: str,
    *,
    job_name: Optional[str] = None,
    name: Optional[str] = None,
    tags: Optional[Mapping[str, Any]] = None,
    execution_timezone: Optional[str] = None,
    description: Optional[str] = None,
    job: Optional[JobDefinition] = None,
    default_status: Any = None,
) -> Callable[[Callable[..., Any]], ScheduleDefinition]:
    """`@schedule("0 * * * *", job=my_job)` or `@schedule(cron_schedule=..., job_name="my_job")`:
    the function decides each tick's requests. Arguments as Dagster's `@schedule`.

    The function takes a `ScheduleContext` (or nothing) and may return a run_config dict,
    one or more RunRequests, a SkipReason, or None (no run this tick); a SensorResult is
    refused, as in Dagster. `default_status`: DefaultScheduleStatus.RUNNING/STOPPED.
    """
    if callable(cron_schedule) and not isinstance(cron_schedule, str):
        fn_name = getattr(cron_schedule, "__name__", repr(cron_schedule))
        raise DefinitionError(
            f"schedule {fn_name!r}: @schedule needs arguments: "
            '@schedule(cron_schedule="0 * * * *", job=my_job)'
        )

    def decorate(fn: Callable[..., Any]) -> ScheduleDefinition:
        if not callable(fn) or isinstance(fn, ScheduleDefinition):
            raise DefinitionError(f"@schedule expects a function, got {fn!r}")
        return ScheduleDefinition(
            job=job,
            job_name=job_name,
            cron_schedule=cron_schedule,
            name=name if name is not None else getattr(fn, "__name__", None),
            execution_timezone=execution_timezone,
            description=description,
            tags=tags,
            execution_fn=fn,
            default_status=default_status,
        )

    return decorate

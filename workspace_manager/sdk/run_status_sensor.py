"""`@run_status_sensor` and `@run_failure_sensor`: react to runs that reached a status.

As in Dagster, the function is called once per run that reached `run_status`, with a
`RunStatusSensorContext` (a `RunFailureSensorContext` for `@run_failure_sensor`), and may
return or yield RunRequests (of `request_job`, or `request_jobs` naming their job_name),
a SkipReason, or None. Which runs it sees: `monitored_jobs` (jobs or names) of its own code
location; all jobs of the location when None (Dagster's default); every location's runs
with `monitor_all_code_locations=True`. The daemon keeps its cursor (the finished runs'
order); a SensorResult may not set one.
"""

from __future__ import annotations

from .context import call
from .errors import DefinitionError
from .job import JobDefinition
from .run_requests import RunRequest, SkipReason, collect_sensor_output
from .run_status_context import DagsterRun, RunFailureSensorContext, RunStatusSensorContext
from .sensor import SensorDefinition
from .status import DagsterRunStatus, check_run_status
from .values import check_name

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Sequence, Tuple

    from .sensor import JobRef


class RunStatusSensorDefinition(SensorDefinition):
    """A sensor evaluated on runs that reached `run_status` (Dagster's class name).

    `monitored_jobs`: the names of the jobs it watches, or None for every job of its code
    location; `monitor_all_code_locations`: watch every location's runs.
    """

    sensor_type = "run_status"
    _target_required = False

    def __init__(
        self,
        fn: Callable[..., Any],
        run_status: Any,
        name: Optional[str] = None,
        minimum_interval_seconds: float = 30,
        description: Optional[str] = None,
        monitored_jobs: Optional[Sequence[JobRef]] = None,
        request_job: Optional[JobRef] = None,
        request_jobs: Optional[Sequence[JobRef]] = None,
        default_status: Any = None,
        monitor_all_code_locations: bool = False,
        failure_context: bool = False,
    ) -> None:
        sensor_name = name if name is not None else getattr(fn, "__name__", repr(fn))
        owner = f"sensor {sensor_name!r}"
        if request_job is not None and request_jobs is not None:
            raise DefinitionError(f"{owner}: give request_job or request_jobs, not both")
        targets = [request_job] if request_job is not None else request_jobs
        super().__init__(
            fn,
            name=name,
            minimum_interval_seconds=minimum_interval_seconds,
            description=description,
            jobs=targets,
            default_status=default_status,
        )
        owner = f"sensor {self.name!r}"
        self.run_status: DagsterRunStatus = check_run_status(run_status, owner)
        if not isinstance(monitor_all_code_locations, bool):
            raise DefinitionError(
                f"{owner}: monitor_all_code_locations must be True or False, "
                f"got {monitor_all_code_locations!r}"
            )
        if monitor_all_code_locations and monitored_jobs is not None:
            raise DefinitionError(
                f"{owner}: give monitored_jobs or monitor_all_code_locations=True, not both"
            )
        self.monitor_all_code_locations = monitor_all_code_locations
        self.monitored_jobs: Optional[List[str]] = _monitored_names(monitored_jobs, owner)
        self.failure_context = failure_context

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, as in a unit test; a run failure sensor turns a
        RunStatusSensorContext into its RunFailureSensorContext, as Dagster does."""
        if self.failure_context and args and type(args[0]) is RunStatusSensorContext:
            args = (args[0].for_run_failure(),) + args[1:]
        return self.fn(*args, **kwargs)

    def skips(self, run: DagsterRun, location: Optional[str]) -> Optional[str]:
        """Why `run` is not for this sensor (None: it is). `location` is the sensor's own
        code location; a run with no location is taken to be from it."""
        if run.status is not self.run_status:
            return f"run status {run.status.value} is not {self.run_status.value}"
        if (
            not self.monitor_all_code_locations
            and location is not None
            and run.location is not None
            and run.location != location
        ):
            return f"run of location {run.location!r}, not {location!r}"
        if self.monitored_jobs is not None and run.job_name not in self.monitored_jobs:
            return f"job {run.job_name!r} is not monitored"
        return None

    def evaluate_run(
        self, run: DagsterRun, repository_name: Optional[str] = None
    ) -> Tuple[List[RunRequest], Optional[SkipReason]]:
        """Call the function for one run and check what it produced."""
        owner = f"sensor {self.name!r}"
        context: RunStatusSensorContext
        if self.failure_context:
            context = RunFailureSensorContext(self.name, run, repository_name)
        else:
            context = RunStatusSensorContext(self.name, run, repository_name)
        result = call(self.fn, self.takes_context, context)
        requests, skip, sensor_result = collect_sensor_output(result, owner)
        if sensor_result is not None and sensor_result.cursor is not None:
            raise DefinitionError(
                f"{owner} returned SensorResult(cursor=...); a run status sensor's cursor "
                "is kept by wsm (as by Dagster)"
            )
        return requests, skip

    def evaluate(self, context: Any) -> Tuple[List[RunRequest], Optional[SkipReason]]:
        raise DefinitionError(
            f"sensor {self.name!r} is a run status sensor: it is evaluated on runs "
            "(evaluate_run_status_sensor), not on an interval"
        )

    def __repr__(self) -> str:
        return f"<RunStatusSensorDefinition {self.name!r} on {self.run_status.value}>"


def _monitored_names(monitored: object, owner: str) -> Optional[List[str]]:
    if monitored is None:
        return None
    if not isinstance(monitored, (list, tuple)):
        raise DefinitionError(
            f"{owner}: monitored_jobs must be a list of jobs or job names, got {monitored!r}"
        )
    if not monitored:
        raise DefinitionError(
            f"{owner}: monitored_jobs is empty; leave it out to monitor every job of the "
            "code location"
        )
    names: List[str] = []
    for index, item in enumerate(monitored):
        if isinstance(item, JobDefinition):
            name = item.name
        elif isinstance(item, str):
            name = check_name(item, "job")
        else:
            raise DefinitionError(
                f"{owner}: monitored_jobs[{index}] is {item!r}, not a @job definition or a job name"
            )
        if name not in names:
            names.append(name)
    return names


def run_status_sensor(
    run_status: Any = None,
    name: Optional[str] = None,
    minimum_interval_seconds: float = 30,
    description: Optional[str] = None,
    monitored_jobs: Optional[Sequence[JobRef]] = None,
    request_job: Optional[JobRef] = None,
    request_jobs: Optional[Sequence[JobRef]] = None,
    default_status: Any = None,
    monitor_all_code_locations: bool = False,
) -> Callable[[Callable[..., Any]], RunStatusSensorDefinition]:
    """`@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, request_job=report)`:
    call the function once for each run that reaches `run_status` (a DagsterRunStatus, or
    its name). Arguments as Dagster's `run_status_sensor`; see this module's docstring.
    """
    if callable(run_status) and not isinstance(run_status, (str, DagsterRunStatus)):
        fn_name = getattr(run_status, "__name__", repr(run_status))
        raise DefinitionError(
            f"sensor {fn_name!r}: @run_status_sensor needs a run_status: "
            "@run_status_sensor(run_status=DagsterRunStatus.SUCCESS)"
        )
    if run_status is None:
        raise DefinitionError(
            "@run_status_sensor: run_status is required, e.g. DagsterRunStatus.SUCCESS"
        )

    def decorate(fn: Callable[..., Any]) -> RunStatusSensorDefinition:
        return RunStatusSensorDefinition(
            fn,
            run_status,
            name=name,
            minimum_interval_seconds=minimum_interval_seconds,
            description=description,
            monitored_jobs=monitored_jobs,
            request_job=request_job,
            request_jobs=request_jobs,
            default_status=default_status,
            monitor_all_code_locations=monitor_all_code_locations,
        )

    return decorate


def run_failure_sensor(
    fn: Optional[Callable[..., Any]] = None,
    *,
    name: Optional[str] = None,
    minimum_interval_seconds: float = 30,
    description: Optional[str] = None,
    monitored_jobs: Optional[Sequence[JobRef]] = None,
    request_job: Optional[JobRef] = None,
    request_jobs: Optional[Sequence[JobRef]] = None,
    default_status: Any = None,
    monitor_all_code_locations: bool = False,
) -> Any:
    """`@run_failure_sensor` or `@run_failure_sensor(...)`: a run status sensor on FAILURE
    whose context is a RunFailureSensorContext (`context.failure_event.message` is the
    run's error). Arguments as Dagster's `run_failure_sensor`."""

    def decorate(inner: Callable[..., Any]) -> RunStatusSensorDefinition:
        return RunStatusSensorDefinition(
            inner,
            DagsterRunStatus.FAILURE,
            name=name,
            minimum_interval_seconds=minimum_interval_seconds,
            description=description,
            monitored_jobs=monitored_jobs,
            request_job=request_job,
            request_jobs=request_jobs,
            default_status=default_status,
            monitor_all_code_locations=monitor_all_code_locations,
            failure_context=True,
        )

    if fn is not None:
        return decorate(fn)
    return decorate

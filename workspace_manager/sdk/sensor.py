"""`@sensor(job=...)`: a function polled every `minimum_interval_seconds` for run requests.

A sensor targets one job (`job=` or `job_name=`) or several (`jobs=[...]`, Dagster's
argument: each RunRequest then names its `job_name`). Its first state is `default_status`
(Dagster's `DefaultSensorStatus`; None: the workspace decides).
"""

from __future__ import annotations

from .callables import getdoc
from .context import SensorContext, call, wants_context
from .errors import DefinitionError
from .job import JobDefinition
from .run_requests import RunRequest, SkipReason, collect_sensor_output
from .status import DefaultSensorStatus, check_default_status
from .values import check_description, check_name

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

    #: What `jobs=` may hold: job definitions, or names looked up in the repository.
    JobRef = Union[JobDefinition, str]


class SensorDefinition:
    """A named sensor targeting one job or several; its function may take a `SensorContext`.

    `job`/`job_name` are the default job of its RunRequests (None when it targets several
    jobs); `jobs` the target definitions the repository includes; `job_names` every
    target's name.
    """

    #: "standard", or "run_status" for RunStatusSensorDefinition (the snapshot's sensor_type).
    sensor_type = "standard"
    #: A standard sensor needs a target; a run status sensor may have none.
    _target_required = True

    def __init__(
        self,
        fn: Callable[..., Any],
        job: Optional[JobDefinition] = None,
        name: Optional[str] = None,
        minimum_interval_seconds: float = 30,
        description: Optional[str] = None,
        job_name: Optional[str] = None,
        jobs: Optional[Sequence[JobRef]] = None,
        default_status: Any = None,
    ) -> None:
        if not callable(fn) or isinstance(fn, (JobDefinition, SensorDefinition)):
            raise DefinitionError(f"@sensor expects a function, got {fn!r}")
        self.name: str = check_name(
            name if name is not None else getattr(fn, "__name__", repr(fn)), "sensor"
        )
        owner = f"sensor {self.name!r}"
        self.job: Optional[JobDefinition]
        self.job_name: Optional[str]
        self.job, self.job_name, self.jobs, self.job_names = resolve_targets(
            job, job_name, jobs, owner, required=self._target_required
        )
        self.default_status: Optional[DefaultSensorStatus] = check_default_status(
            default_status, owner, DefaultSensorStatus
        )
        if (
            isinstance(minimum_interval_seconds, bool)
            or not isinstance(minimum_interval_seconds, (int, float))
            or not minimum_interval_seconds > 0
        ):
            raise DefinitionError(
                f"{owner}: minimum_interval_seconds must be a positive number, "
                f"got {minimum_interval_seconds!r}"
            )
        self.minimum_interval_seconds = minimum_interval_seconds
        self.description: Optional[str] = check_description(
            description if description is not None else getdoc(fn), owner
        )
        self.fn = fn
        self.takes_context: bool = wants_context(fn, owner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the sensor's function directly, as in a unit test."""
        return self.fn(*args, **kwargs)

    def evaluate(self, context: SensorContext) -> Tuple[List[RunRequest], Optional[SkipReason]]:
        """Call the function (consuming a generator) and check what it produced.

        A SensorResult's cursor is set on `context` as `update_cursor` would; having
        called `update_cursor` too is a DefinitionError (Dagster's rule).
        """
        owner = f"sensor {self.name!r}"
        result = call(self.fn, self.takes_context, context)
        requests, skip, sensor_result = collect_sensor_output(result, owner)
        if sensor_result is not None and sensor_result.cursor is not None:
            if context.cursor_updated:
                raise DefinitionError(
                    f"{owner} called context.update_cursor() and returned "
                    "SensorResult(cursor=...); set the cursor one way"
                )
            context.update_cursor(sensor_result.cursor)
        return requests, skip

    def __repr__(self) -> str:
        if self.job_name is None and self.job_names:
            return f"<SensorDefinition {self.name!r} -> jobs {self.job_names!r}>"
        return f"<SensorDefinition {self.name!r} -> job {self.job_name!r}>"


def sensor(
    fn: Optional[Callable[..., Any]] = None,
    *,
    job: Optional[JobDefinition] = None,
    name: Optional[str] = None,
    minimum_interval_seconds: float = 30,
    description: Optional[str] = None,
    job_name: Optional[str] = None,
    jobs: Optional[Sequence[JobRef]] = None,
    default_status: Any = None,
) -> Any:
    """Make a sensor: `@sensor(job=my_job, name=..., minimum_interval_seconds=...,
    default_status=DefaultSensorStatus.RUNNING)`, or `job_name="my_job"` (looked up in the
    repository), or `jobs=[a, b]` (each RunRequest names its job_name), as Dagster's
    `@sensor`. The function may return or yield RunRequests, a SkipReason, or return one
    SensorResult."""
    if fn is not None:  # bare @sensor: there is no job to target
        fn_name = getattr(fn, "__name__", repr(fn))
        raise DefinitionError(
            f"sensor {fn_name!r}: no job given; write @sensor(job=my_job) above the function"
        )

    def decorate(inner: Callable[..., Any]) -> SensorDefinition:
        if job is None and job_name is None and jobs is None:
            fn_name = name or getattr(inner, "__name__", repr(inner))
            raise DefinitionError(f"sensor {fn_name!r}: no job given; use @sensor(job=my_job)")
        return SensorDefinition(
            inner,
            job=job,
            name=name,
            minimum_interval_seconds=minimum_interval_seconds,
            description=description,
            job_name=job_name,
            jobs=jobs,
            default_status=default_status,
        )

    return decorate


def check_target(job: object, owner: str) -> JobDefinition:
    """The job a sensor or schedule targets must be a JobDefinition, not a bare function."""
    if isinstance(job, JobDefinition):
        return job
    hint = " (decorate it with @job)" if callable(job) else ""
    raise DefinitionError(f"{owner}: job must be a @job definition, got {job!r}{hint}")


def resolve_target(
    job: object, job_name: object, owner: str
) -> Tuple[Optional[JobDefinition], str]:
    """(the job object or None, the job's name) from Dagster's `job=` or `job_name=`.

    Exactly one must be given. A `job_name` is looked up when the repository is built
    (RepositoryDefinition), where an unknown name is a DefinitionError.
    """
    if job is not None and job_name is not None:
        raise DefinitionError(f"{owner}: give job or job_name, not both")
    if job is not None:
        target = check_target(job, owner)
        return target, target.name
    if job_name is None:
        raise DefinitionError(f'{owner}: no job given; pass job=my_job or job_name="my_job"')
    if not isinstance(job_name, str):
        raise DefinitionError(f"{owner}: job_name must be a str, got {job_name!r}")
    return None, check_name(job_name, "job")


def resolve_targets(
    job: object, job_name: object, jobs: object, owner: str, required: bool = True
) -> Tuple[Optional[JobDefinition], Optional[str], List[JobDefinition], List[str]]:
    """(default job or None, its name or None, target definitions, every target's name)
    from Dagster's `job=`, `job_name=` or `jobs=[...]`; at most one of them may be given.

    `jobs` holds job definitions or names (looked up when the repository is built). With a
    single target it is that target's default job; with several there is none, and each
    RunRequest must name its job. Nothing given: DefinitionError when `required`.
    """
    given = [
        label
        for label, v in (("job", job), ("job_name", job_name), ("jobs", jobs))
        if v is not None
    ]
    if len(given) > 1:
        raise DefinitionError(f"{owner}: give one of {', '.join(given)}, not several")
    if jobs is None:
        if job is None and job_name is None and not required:
            return None, None, [], []
        target, name = resolve_target(job, job_name, owner)
        return target, name, [target] if target is not None else [], [name]
    if not isinstance(jobs, (list, tuple)):
        hint = " (use job= for one job)" if isinstance(jobs, JobDefinition) else ""
        raise DefinitionError(f"{owner}: jobs must be a list of jobs, got {jobs!r}{hint}")
    if not jobs:
        raise DefinitionError(f"{owner}: jobs is empty; give at least one job")
    names: List[str] = []
    by_name: Dict[str, JobRef] = {}
    for index, item in enumerate(jobs):
        if isinstance(item, str):
            name = check_name(item, "job")
        elif isinstance(item, JobDefinition):
            name = item.name
        else:
            hint = " (decorate it with @job)" if callable(item) else ""
            raise DefinitionError(
                f"{owner}: jobs[{index}] is {item!r}, not a @job definition or a job name{hint}"
            )
        seen = by_name.get(name)
        if seen is None:
            names.append(name)
            by_name[name] = item
        elif isinstance(item, JobDefinition):
            if isinstance(seen, JobDefinition) and seen is not item:
                raise DefinitionError(f"{owner}: two different jobs in jobs are named {name!r}")
            by_name[name] = item  # a definition tells more than its name
    objects = [item for item in by_name.values() if isinstance(item, JobDefinition)]
    if len(names) == 1:
        only = by_name[names[0]]
        return (only if isinstance(only, JobDefinition) else None), names[0], objects, names
    return None, None, objects, names

"""`@sensor(job=...)`: a function polled every `minimum_interval_seconds` for run requests."""

from __future__ import annotations

import inspect
from typing import Any, Callable, List, Optional, Tuple

from .context import SensorContext, call, wants_context
from .errors import DefinitionError
from .job import JobDefinition
from .run_requests import RunRequest, SkipReason, collect_requests
from .values import check_description, check_name


class SensorDefinition:
    """A named sensor targeting one job; its function may take a `SensorContext`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        job: Optional[JobDefinition] = None,
        name: Optional[str] = None,
        minimum_interval_seconds: float = 30,
        description: Optional[str] = None,
        job_name: Optional[str] = None,
    ) -> None:
        if not callable(fn) or isinstance(fn, (JobDefinition, SensorDefinition)):
            raise DefinitionError(f"@sensor expects a function, got {fn!r}")
        self.name: str = check_name(
            name if name is not None else getattr(fn, "__name__", repr(fn)), "sensor"
        )
        owner = f"sensor {self.name!r}"
        self.job: Optional[JobDefinition]
        self.job, self.job_name = resolve_target(job, job_name, owner)
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
            description if description is not None else inspect.getdoc(fn), owner
        )
        self.fn = fn
        self.takes_context: bool = wants_context(fn, owner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the sensor's function directly, as in a unit test."""
        return self.fn(*args, **kwargs)

    def evaluate(self, context: SensorContext) -> Tuple[List[RunRequest], Optional[SkipReason]]:
        """Call the function (consuming a generator) and check what it produced."""
        result = call(self.fn, self.takes_context, context)
        return collect_requests(result, f"sensor {self.name!r}")

    def __repr__(self) -> str:
        return f"<SensorDefinition {self.name!r} -> job {self.job_name!r}>"


def sensor(
    fn: Optional[Callable[..., Any]] = None,
    *,
    job: Optional[JobDefinition] = None,
    name: Optional[str] = None,
    minimum_interval_seconds: float = 30,
    description: Optional[str] = None,
    job_name: Optional[str] = None,
) -> Any:
    """Make a sensor: `@sensor(job=my_job, name=..., minimum_interval_seconds=...)`, or
    `job_name="my_job"` (looked up in the repository), as Dagster's `@sensor`."""
    if fn is not None:  # bare @sensor: there is no job to target
        fn_name = getattr(fn, "__name__", repr(fn))
        raise DefinitionError(
            f"sensor {fn_name!r}: no job given; write @sensor(job=my_job) above the function"
        )

    def decorate(inner: Callable[..., Any]) -> SensorDefinition:
        if job is None and job_name is None:
            fn_name = name or getattr(inner, "__name__", repr(inner))
            raise DefinitionError(f"sensor {fn_name!r}: no job given; use @sensor(job=my_job)")
        return SensorDefinition(
            inner,
            job=job,
            name=name,
            minimum_interval_seconds=minimum_interval_seconds,
            description=description,
            job_name=job_name,
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

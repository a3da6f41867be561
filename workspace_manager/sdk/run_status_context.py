"""What a run status sensor's function receives: the run that reached the status.

Dagster's shapes, kept small: `context.dagster_run` (also `context.run`) is a `DagsterRun`
with `run_id`, `job_name`, `status`, `tags`, `run_config`, `location`, `repository` and
`error`; a run failure sensor's context adds `failure_event.message` (the run's error).
`build_run_status_sensor_context` makes one for a unit test, as Dagster's does.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import DefinitionError
from .status import DagsterRunStatus, check_run_status
from .values import check_name, check_tags, plain_config

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Dict, Mapping, Optional


class DagsterRun:
    """One run as a run status sensor sees it (Dagster's `DagsterRun`, its common fields).

    `status` is a DagsterRunStatus (given as one or as its name); `error` is the run's
    one-line error, if it has one; `location` is the code location it ran in.
    """

    __slots__ = (
        "run_id",
        "job_name",
        "status",
        "tags",
        "run_config",
        "location",
        "repository",
        "error",
    )

    def __init__(
        self,
        job_name: str,
        run_id: Optional[str] = None,
        run_config: Optional[Mapping[str, Any]] = None,
        status: Any = DagsterRunStatus.QUEUED,
        tags: Optional[Mapping[str, Any]] = None,
        location: Optional[str] = None,
        repository: Optional[str] = None,
        error: Optional[str] = None,
    ) -> None:
        self.job_name: str = check_name(job_name, "job")
        if run_id is not None and not isinstance(run_id, str):
            raise DefinitionError(f"DagsterRun: run_id must be a str, got {run_id!r}")
        self.run_id: str = run_id if run_id is not None else _new_run_id()
        self.status: DagsterRunStatus = check_run_status(status, "DagsterRun")
        self.run_config: Dict[str, Any] = plain_config(run_config, "DagsterRun")
        self.tags: Dict[str, str] = check_tags(tags, "DagsterRun")
        for label, value in (("location", location), ("repository", repository)):
            if value is not None and not isinstance(value, str):
                raise DefinitionError(f"DagsterRun: {label} must be a str, got {value!r}")
        self.location = location
        self.repository = repository
        if error is not None and not isinstance(error, str):
            raise DefinitionError(f"DagsterRun: error must be a str, got {error!r}")
        self.error = error

    @property
    def is_failure(self) -> bool:
        return self.status is DagsterRunStatus.FAILURE

    @property
    def is_success(self) -> bool:
        return self.status is DagsterRunStatus.SUCCESS

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DagsterRun):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"DagsterRun(run_id={self.run_id!r}, job_name={self.job_name!r}, "
            f"status={self.status.value!r})"
        )


class RunFailureEvent:
    """The failure of a run, as `context.failure_event` (Dagster's DagsterEvent, its
    `message` and `job_name`; `event_type_value` is Dagster's "RUN_FAILURE")."""

    __slots__ = ("message", "job_name", "event_type_value")

    def __init__(self, message: Optional[str], job_name: str) -> None:
        self.message = message
        self.job_name = job_name
        self.event_type_value = "RUN_FAILURE"

    def __repr__(self) -> str:
        return f"RunFailureEvent(job_name={self.job_name!r}, message={self.message!r})"


class RunStatusSensorContext:
    """Given to a `@run_status_sensor` function, once per run that reached its status."""

    def __init__(
        self,
        sensor_name: str,
        dagster_run: DagsterRun,
        repository_name: Optional[str] = None,
        dagster_event: Any = None,
    ) -> None:
        if not isinstance(dagster_run, DagsterRun):
            raise DefinitionError(
                f"run status sensor {sensor_name!r}: dagster_run must be a DagsterRun, "
                f"got {dagster_run!r}"
            )
        self.sensor_name = sensor_name
        self.dagster_run = dagster_run
        self.repository_name = repository_name
        self.dagster_event = dagster_event

    @property
    def run(self) -> DagsterRun:
        """The same as `dagster_run`."""
        return self.dagster_run

    def for_run_failure(self) -> RunFailureSensorContext:
        """This context as a run failure sensor's (Dagster's method)."""
        return RunFailureSensorContext(
            self.sensor_name, self.dagster_run, self.repository_name, self.dagster_event
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sensor_name={self.sensor_name!r}, "
            f"dagster_run={self.dagster_run!r})"
        )


class RunFailureSensorContext(RunStatusSensorContext):
    """Given to a `@run_failure_sensor` function: adds `failure_event.message`."""

    @property
    def failure_event(self) -> Any:
        """The given `dagster_event` if there was one, else a RunFailureEvent whose
        `message` is the run's error."""
        if self.dagster_event is not None:
            return self.dagster_event
        return RunFailureEvent(self.dagster_run.error, self.dagster_run.job_name)


def run_from_dict(data: Mapping[str, Any]) -> DagsterRun:
    """A DagsterRun from the protocol's run map (docs/protocol.md,
    evaluate_run_status_sensor). `error` may be a str or an error map with a "message"."""
    error = data.get("error")
    if isinstance(error, Mapping):
        error = error.get("message")
    return DagsterRun(
        job_name=data["job_name"],
        run_id=data["run_id"],
        run_config=data.get("run_config"),
        status=data["status"],
        tags=data.get("tags"),
        location=data.get("location"),
        repository=data.get("repository"),
        error=error,
    )


def build_run_status_sensor_context(
    sensor_name: str = "test_sensor",
    dagster_event: Any = None,
    dagster_instance: Any = None,
    dagster_run: Optional[DagsterRun] = None,
    context: Any = None,
    resources: Any = None,
    partition_key: Any = None,
    *,
    repository_def: Any = None,
    repository_name: Optional[str] = None,
) -> RunStatusSensorContext:
    """A RunStatusSensorContext for calling a run status sensor in a test (Dagster's name
    and argument order). Call `.for_run_failure()` for a run failure sensor's context, or
    pass this one straight to a `@run_failure_sensor`, which converts it as Dagster does.

    `dagster_run` is required (a DagsterRun); `dagster_instance` and Dagster's other
    arguments (context, resources, partition_key, repository_def) are accepted and
    ignored: wsm has no instance. `dagster_event` becomes `failure_event` when given.
    """
    if dagster_run is None:
        raise DefinitionError(
            "build_run_status_sensor_context: dagster_run is required, e.g. "
            'DagsterRun(job_name="my_job", status=DagsterRunStatus.FAILURE, error="...")'
        )
    return RunStatusSensorContext(sensor_name, dagster_run, repository_name, dagster_event)


def _new_run_id() -> str:
    """A fresh run id (uuid4 hex); uuid is imported on the first call, not with the SDK."""
    import uuid

    return uuid.uuid4().hex

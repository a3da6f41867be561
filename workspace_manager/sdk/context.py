"""What a job, schedule or sensor function may receive, and whether it wants it.

A function receives a context when its first positional parameter has no default
(`def my_sensor(context)`) or when it takes `*args`; otherwise it is called with no
arguments. This is decided once, when the definition is made, not on every call.
"""

from __future__ import annotations

from .callables import required_parameters
from .errors import DefinitionError

# Imported where used, not here: datetime, logging and uuid cost more at start-up than the
# whole SDK's own code (docs/architecture.md, "What a location imports"); typing is for
# type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime as _dt
    import logging
    from typing import Any, Callable, Dict, Optional, Union


def wants_context(fn: object, owner: str) -> bool:
    """True if `fn` takes a context argument; DefinitionError if it needs more than one."""
    if not callable(fn):
        raise DefinitionError(f"{owner}: expected a function, got {fn!r}")
    try:
        required, keyword, var_positional = required_parameters(fn)
    except (TypeError, ValueError):  # some builtins have no signature: call them bare
        return False
    if len(required) > 1 or keyword:
        raise DefinitionError(
            f"{owner}: the function must take one context argument or none, "
            f"but it requires {', '.join(required + keyword)}"
        )
    return bool(required) or var_positional


def call(fn: Callable[..., Any], takes_context: bool, context: object) -> Any:
    return fn(context) if takes_context else fn()


class JobContext:
    """Given to a job function: the run's id, config and tags, the job's name, and `log`.

    The names are Dagster's (`context.run_id`, `context.run_config`, `context.log.info(...)`).
    `log` is a `logging.Logger`: in a run process (workspace_manager/runner/) its records go
    to the run's log; elsewhere (a unit test, the loader's `execute_job`) it is the logger
    ``wsm.job.<job_name>``, which propagates as any logger does. `tags` values are strings.
    The constructor's `log` may also be a function of no arguments that makes the logger:
    it is called when `log` is first read, so a job that never logs never imports `logging`
    (with `traceback` and `re` it costs a run process ~10 ms at start).
    """

    def __init__(
        self,
        job_name: str,
        run_config: Optional[Dict[str, Any]] = None,
        run_id: Optional[str] = None,
        tags: Optional[Dict[str, str]] = None,
        log: Optional[Union[logging.Logger, Callable[[], logging.Logger]]] = None,
    ) -> None:
        self.job_name = job_name
        self.run_config: Dict[str, Any] = run_config if run_config is not None else {}
        self.run_id: str = run_id if run_id is not None else _local_run_id()
        self.tags: Dict[str, str] = dict(tags) if tags else {}
        self._log = log

    @property
    def log(self) -> logging.Logger:
        """The job's logger, made on first use (see the class)."""
        log = self._log
        if log is None:
            import logging

            log = self._log = logging.getLogger(f"wsm.job.{self.job_name}")
        elif callable(log):  # a Logger is not callable: this is the factory
            log = self._log = log()
        return log

    @log.setter
    def log(self, value: logging.Logger) -> None:
        self._log = value

    def __repr__(self) -> str:
        return (
            f"JobContext(job_name={self.job_name!r}, run_id={self.run_id!r}, "
            f"run_config={self.run_config!r}, tags={self.tags!r})"
        )


def _local_run_id() -> str:
    """A run id for a job called outside a run (a test, `execute_job`): uuid4 hex, the
    shape of a real run's id."""
    import uuid

    return uuid.uuid4().hex


class ScheduleContext:
    """Given to a schedule function: the tick's time, aware, in the schedule's time zone."""

    def __init__(
        self,
        schedule_name: str,
        scheduled_execution_time: _dt.datetime,
        repository_name: Optional[str] = None,
    ) -> None:
        self.schedule_name = schedule_name
        self.scheduled_execution_time = scheduled_execution_time
        self.repository_name = repository_name

    def __repr__(self) -> str:
        return (
            f"ScheduleContext(schedule_name={self.schedule_name!r}, "
            f"scheduled_execution_time={self.scheduled_execution_time!r})"
        )


class SensorContext:
    """Given to a sensor function: the cursor it left last time and the last run key.

    `update_cursor(value)` records a new cursor (a str, or None to clear it); the
    caller gets it back with the evaluation's result and passes it in next tick.
    """

    def __init__(
        self,
        sensor_name: str,
        cursor: Optional[str] = None,
        last_run_key: Optional[str] = None,
        repository_name: Optional[str] = None,
    ) -> None:
        self.sensor_name = sensor_name
        self.last_run_key = last_run_key
        self.repository_name = repository_name
        self._cursor = _check_cursor(cursor, sensor_name)
        self.cursor_updated = False

    @property
    def cursor(self) -> Optional[str]:
        return self._cursor

    def update_cursor(self, cursor: Optional[str]) -> None:
        self._cursor = _check_cursor(cursor, self.sensor_name)
        self.cursor_updated = True

    def __repr__(self) -> str:
        return (
            f"SensorContext(sensor_name={self.sensor_name!r}, cursor={self._cursor!r}, "
            f"last_run_key={self.last_run_key!r})"
        )


def _check_cursor(cursor: object, sensor_name: str) -> Optional[str]:
    if cursor is not None and not isinstance(cursor, str):
        raise DefinitionError(
            f"sensor {sensor_name!r}: a cursor must be a str or None, got {cursor!r} "
            "(serialise it, e.g. with json.dumps)"
        )
    return cursor


def build_schedule_context(
    scheduled_execution_time: Optional[_dt.datetime] = None,
    *,
    schedule_name: str = "test_schedule",
    repository_name: Optional[str] = None,
    instance: object = None,
) -> ScheduleContext:
    """A ScheduleContext for calling a schedule's function in a test (Dagster's name).

    `scheduled_execution_time` defaults to now; a naive datetime is taken as UTC.
    `instance` is accepted for Dagster's tests and ignored: wsm has no instance object.
    """
    import datetime as _dt

    when = scheduled_execution_time or _dt.datetime.now(_dt.timezone.utc)
    if not isinstance(when, _dt.datetime):
        raise DefinitionError(f"scheduled_execution_time must be a datetime, got {when!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return ScheduleContext(schedule_name, when, repository_name)


def build_sensor_context(
    cursor: Optional[str] = None,
    *,
    sensor_name: str = "test_sensor",
    last_run_key: Optional[str] = None,
    repository_name: Optional[str] = None,
    instance: object = None,
) -> SensorContext:
    """A SensorContext for calling a sensor's function in a test (Dagster's name).

    `instance` is accepted for Dagster's tests and ignored: wsm has no instance object.
    """
    return SensorContext(sensor_name, cursor, last_run_key, repository_name)

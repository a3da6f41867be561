"""The definitions repository code writes. Standard library only; runs on CPython 3.9+.

This package is imported inside every repository's own interpreter, so it must
never import wsm's dependencies (yaml, msgpack, psutil, ...) nor the manager's
packages.
"""

from __future__ import annotations

from .context import (
    JobContext,
    ScheduleContext,
    SensorContext,
    build_schedule_context,
    build_sensor_context,
)
from .definitions import Definitions
from .errors import DefinitionError, NotFoundError
from .job import JobDefinition, job
from .repository import RepositoryDefinition, repository
from .run_requests import RunRequest, SensorResult, SkipReason
from .run_status_context import (
    DagsterRun,
    RunFailureSensorContext,
    RunStatusSensorContext,
    build_run_status_sensor_context,
)
from .run_status_sensor import RunStatusSensorDefinition, run_failure_sensor, run_status_sensor
from .schedule import ScheduleDefinition, schedule
from .sensor import SensorDefinition, sensor
from .status import DagsterRunStatus, DefaultScheduleStatus, DefaultSensorStatus

__all__ = [
    "DagsterRun",
    "DagsterRunStatus",
    "DefaultScheduleStatus",
    "DefaultSensorStatus",
    "DefinitionError",
    "Definitions",
    "JobContext",
    "JobDefinition",
    "NotFoundError",
    "RepositoryDefinition",
    "RunFailureSensorContext",
    "RunRequest",
    "RunStatusSensorContext",
    "RunStatusSensorDefinition",
    "ScheduleContext",
    "ScheduleDefinition",
    "SensorContext",
    "SensorDefinition",
    "SensorResult",
    "SkipReason",
    "build_run_status_sensor_context",
    "build_schedule_context",
    "build_sensor_context",
    "job",
    "repository",
    "run_failure_sensor",
    "run_status_sensor",
    "schedule",
    "sensor",
]

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
from .run_requests import RunRequest, SkipReason
from .schedule import ScheduleDefinition, schedule
from .sensor import SensorDefinition, sensor

__all__ = [
    "DefinitionError",
    "Definitions",
    "JobContext",
    "JobDefinition",
    "NotFoundError",
    "RepositoryDefinition",
    "RunRequest",
    "ScheduleContext",
    "ScheduleDefinition",
    "SensorContext",
    "SensorDefinition",
    "SkipReason",
    "build_schedule_context",
    "build_sensor_context",
    "job",
    "repository",
    "schedule",
    "sensor",
]

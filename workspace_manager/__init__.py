"""wsm: what repository code imports.

`from workspace_manager import job, repository, sensor, ScheduleDefinition, RunRequest`

Only the SDK's names live here, and this file imports nothing but `sdk/` and
`version.py`: it runs inside every repository's own interpreter. The manager
itself lives in the subpackages (`cli`, `supervisor`, ...), imported explicitly.
"""

# No `from __future__ import annotations` here: it would add a public name, and this
# file has no annotations.
from .sdk import (
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    DefinitionError,
    Definitions,
    JobDefinition,
    RepositoryDefinition,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    RunStatusSensorDefinition,
    ScheduleDefinition,
    SensorDefinition,
    SensorResult,
    SkipReason,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
    job,
    repository,
    run_failure_sensor,
    run_status_sensor,
    schedule,
    sensor,
)
from .version import __version__

__all__ = [
    "DagsterRun",
    "DagsterRunStatus",
    "DefaultScheduleStatus",
    "DefaultSensorStatus",
    "DefinitionError",
    "Definitions",
    "JobDefinition",
    "RepositoryDefinition",
    "RunFailureSensorContext",
    "RunRequest",
    "RunStatusSensorContext",
    "RunStatusSensorDefinition",
    "ScheduleDefinition",
    "SensorDefinition",
    "SensorResult",
    "SkipReason",
    "build_run_status_sensor_context",
    "build_schedule_context",
    "build_sensor_context",
    "__version__",
    "job",
    "repository",
    "run_failure_sensor",
    "run_status_sensor",
    "schedule",
    "sensor",
]

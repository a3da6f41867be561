"""wsm: what repository code imports.

`from workspace_manager import job, repository, sensor, ScheduleDefinition, RunRequest`

Only the SDK's names live here, and this file imports nothing but `sdk/` and
`version.py`: it runs inside every repository's own interpreter. The manager
itself lives in the subpackages (`cli`, `supervisor`, ...), imported explicitly.
"""

# No `from __future__ import annotations` here: it would add a public name, and this
# file has no annotations.
from .sdk import (
    DefinitionError,
    Definitions,
    JobDefinition,
    RepositoryDefinition,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    job,
    repository,
    schedule,
    sensor,
)
from .version import __version__

__all__ = [
    "DefinitionError",
    "Definitions",
    "JobDefinition",
    "RepositoryDefinition",
    "RunRequest",
    "ScheduleDefinition",
    "SensorDefinition",
    "SkipReason",
    "build_schedule_context",
    "build_sensor_context",
    "__version__",
    "job",
    "repository",
    "schedule",
    "sensor",
]

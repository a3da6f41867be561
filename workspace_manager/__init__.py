"""wsm: what repository code imports.

`from workspace_manager import job, repository, sensor, ScheduleDefinition, RunRequest`

Only the SDK's names live here, and this file imports nothing but `sdk/` and
`version.py`: it runs inside every repository's own interpreter. The manager
itself lives in the subpackages (`cli`, `supervisor`, ...), imported explicitly.

The SDK's names are loaded on first use (PEP 562 module `__getattr__`): every wsm
command imports this package first and uses none of them, and the SDK costs 5-14 ms
to import. Repository code sees no difference: `from workspace_manager import job`,
`workspace_manager.job`, `from workspace_manager import *` and `dir()` work as before.
"""

from .version import __version__

# No `from __future__ import annotations` (it would add a public name) and no `typing`
# import (its cost is what this file avoids): type checkers (mypy, pyright) take any name
# TYPE_CHECKING as true, so they see the names imported below and not `__getattr__` (which
# would hide a misspelt name from them). The name is deleted after use, not exported.
TYPE_CHECKING = False
if TYPE_CHECKING:
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
else:

    def __getattr__(name: str) -> object:  # PEP 562
        """An SDK name, imported from `sdk/` on first use and kept here; AttributeError for
        any other name (so `from workspace_manager import cli` still finds the subpackage)."""
        if name.startswith("__") or name not in __all__:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from . import sdk

        value = getattr(sdk, name)
        globals()[name] = value
        return value

    def __dir__() -> "list[str]":  # PEP 562
        """What is loaded, plus the SDK's names whether loaded yet or not."""
        return sorted(set(globals()) | set(__all__))


del TYPE_CHECKING

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

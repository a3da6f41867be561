"""`Definitions(jobs=..., schedules=..., sensors=...)` at module level: Dagster's usual shape.

A module-level `defs = Definitions(...)` is a repository named after its attribute ("defs"),
found like a `@repository` (sdk/discovery.py). Everything is checked when it is created, as
for `@repository`, so a mistake fails the import with a DefinitionError.
The arguments are Dagster's, in Dagster's order (dagster.Definitions); the ones wsm has no
equivalent for (assets, resources, executor, loggers, asset_checks) are refused when given.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import DefinitionError
from .job import JobDefinition
from .repository import RepositoryDefinition
from .schedule import ScheduleDefinition
from .sensor import SensorDefinition

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Iterable, List, Mapping, Optional, Tuple

#: The placeholder name checks run under before discovery names the repository.
_UNNAMED = "Definitions"


class Definitions:
    """The jobs, schedules and sensors of one code location, as `dagster.Definitions`."""

    def __init__(
        self,
        assets: Optional[Iterable[Any]] = None,
        schedules: Optional[Iterable[ScheduleDefinition]] = None,
        sensors: Optional[Iterable[SensorDefinition]] = None,
        jobs: Optional[Iterable[JobDefinition]] = None,
        resources: Optional[Mapping[str, Any]] = None,
        executor: Any = None,
        loggers: Optional[Mapping[str, Any]] = None,
        asset_checks: Optional[Iterable[Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> None:
        unsupported: Tuple[Tuple[str, Any], ...] = (
            ("assets", assets),
            ("resources", resources),
            ("executor", executor),
            ("loggers", loggers),
            ("asset_checks", asset_checks),
        )
        for label, value in unsupported:
            if value is not None and not (_is_collection(value) and len(value) == 0):
                raise DefinitionError(
                    f"Definitions: {label}= is not supported by wsm "
                    "(it loads jobs, schedules and sensors)"
                )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise DefinitionError(f"Definitions: metadata must be a dict, got {metadata!r}")
        self.metadata = dict(metadata or {})
        items: List[object] = []
        for label, value in (("jobs", jobs), ("schedules", schedules), ("sensors", sensors)):
            if value is None:
                continue
            if isinstance(value, (str, bytes, Mapping)) or not _is_iterable(value):
                raise DefinitionError(f"Definitions: {label} must be a list, got {value!r}")
            items.extend(value)
        self._items = items
        # checked now, under a placeholder name, so mistakes fail the import
        self._checked = RepositoryDefinition(_UNNAMED, items, owner="Definitions")

    def to_repository(self, name: str) -> RepositoryDefinition:
        """The repository these definitions make under `name` (their module attribute)."""
        return RepositoryDefinition(name, self._items)

    @property
    def jobs(self) -> List[JobDefinition]:
        return self._checked.jobs

    @property
    def schedules(self) -> List[ScheduleDefinition]:
        return self._checked.schedules

    @property
    def sensors(self) -> List[SensorDefinition]:
        return self._checked.sensors

    def get_job_def(self, name: str) -> JobDefinition:
        """The job named `name` (Dagster's name for it); NotFoundError if there is none."""
        return self._checked.get_job(name)

    def get_schedule_def(self, name: str) -> ScheduleDefinition:
        return self._checked.get_schedule(name)

    def get_sensor_def(self, name: str) -> SensorDefinition:
        return self._checked.get_sensor(name)

    def __repr__(self) -> str:
        return (
            f"<Definitions: {len(self.jobs)} jobs, {len(self.schedules)} schedules, "
            f"{len(self.sensors)} sensors>"
        )


def _is_iterable(value: object) -> bool:
    try:
        iter(value)  # type: ignore[call-overload]
    except TypeError:
        return False
    return True


def _is_collection(value: object) -> bool:
    return hasattr(value, "__len__")

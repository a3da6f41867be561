"""`@repository`: the list of jobs, schedules and sensors a location serves.

The decorated function runs at decoration time, so importing the module is loading
it, and every mistake the SDK can see surfaces as a DefinitionError during import.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import FunctionType

from .callables import getdoc
from .context import wants_context
from .errors import DefinitionError, NotFoundError
from .job import JobDefinition
from .schedule import ScheduleDefinition
from .sensor import SensorDefinition
from .values import check_description, check_name

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar, Union

    _D = TypeVar("_D", JobDefinition, ScheduleDefinition, SensorDefinition)


class RepositoryDefinition:
    """A named, validated set of jobs, schedules and sensors, in declaration order.

    A schedule's or sensor's target jobs (a sensor's `jobs=`, a run status sensor's
    `request_job`) are added where the schedule or sensor appears (unless listed
    earlier); one given by name must be among the jobs. The
    same object listed twice is kept once; two different objects with one name are an error.
    `definitions` is a list, or Dagster's dict form (see `flatten_dict`). `owner` names the
    definitions in messages (default: "repository NAME").
    """

    def __init__(
        self,
        name: str,
        definitions: Union[Sequence[object], Mapping[str, Any]],
        description: Optional[str] = None,
        owner: Optional[str] = None,
    ) -> None:
        self.name: str = check_name(name, "repository")
        owner = owner or f"repository {self.name!r}"
        self.description: Optional[str] = check_description(description, owner)
        if isinstance(definitions, Mapping):
            definitions = flatten_dict(definitions, owner)
        if not isinstance(definitions, (list, tuple)):
            raise DefinitionError(
                f"{owner} must return a list of jobs, schedules and sensors, got {definitions!r}"
            )
        self._jobs: Dict[str, JobDefinition] = {}
        self._schedules: Dict[str, ScheduleDefinition] = {}
        self._sensors: Dict[str, SensorDefinition] = {}
        for index, item in enumerate(definitions):
            if isinstance(item, JobDefinition):
                self._add(self._jobs, item, "job", owner, "")
            elif isinstance(item, (ScheduleDefinition, SensorDefinition)):
                kind = "schedule" if isinstance(item, ScheduleDefinition) else "sensor"
                why = f" (the target of {kind} {item.name!r})"
                if isinstance(item, ScheduleDefinition):
                    if item.job is not None:
                        self._add(self._jobs, item.job, "job", owner, why)
                else:
                    for target_job in item.jobs:
                        self._add(self._jobs, target_job, "job", owner, why)
                if isinstance(item, ScheduleDefinition):
                    self._add(self._schedules, item, "schedule", owner, "")
                else:
                    self._add(self._sensors, item, "sensor", owner, "")
            else:
                hint = " (did you forget @job?)" if isinstance(item, FunctionType) else ""
                raise DefinitionError(
                    f"{owner}: item {index} of its list, {item!r}, is not a job, schedule "
                    f"or sensor{hint}"
                )
        targets: List[Union[ScheduleDefinition, SensorDefinition]] = [
            *self._schedules.values(),
            *self._sensors.values(),
        ]
        for target in targets:
            if isinstance(target, ScheduleDefinition):
                kind, names = "schedule", [target.job_name]
            else:
                kind, names = "sensor", target.job_names
            for job_name in names:
                if job_name not in self._jobs:
                    known = ", ".join(self._jobs) or "none"
                    raise DefinitionError(
                        f"{owner}: {kind} {target.name!r} targets job {job_name!r}, "
                        f"which is not among its jobs ({known})"
                    )

    @staticmethod
    def _add(table: Dict[str, _D], item: _D, kind: str, owner: str, why: str) -> None:
        existing = table.get(item.name)
        if existing is None:
            table[item.name] = item
        elif existing is not item:
            raise DefinitionError(
                f"{owner}: two different {kind}s are named {item.name!r}{why}; "
                f"{kind} names must be unique within a repository"
            )

    @property
    def jobs(self) -> List[JobDefinition]:
        return list(self._jobs.values())

    @property
    def schedules(self) -> List[ScheduleDefinition]:
        return list(self._schedules.values())

    @property
    def sensors(self) -> List[SensorDefinition]:
        return list(self._sensors.values())

    def has_job(self, name: str) -> bool:
        return name in self._jobs

    def has_schedule(self, name: str) -> bool:
        return name in self._schedules

    def has_sensor(self, name: str) -> bool:
        return name in self._sensors

    def get_job(self, name: str) -> JobDefinition:
        return self._get(self._jobs, name, "job")

    def get_schedule(self, name: str) -> ScheduleDefinition:
        return self._get(self._schedules, name, "schedule")

    def get_sensor(self, name: str) -> SensorDefinition:
        return self._get(self._sensors, name, "sensor")

    def _get(self, table: Dict[str, _D], name: str, kind: str) -> _D:
        try:
            return table[name]
        except (KeyError, TypeError):
            known = ", ".join(table) or "none"
            raise NotFoundError(
                f"repository {self.name!r} has no {kind} named {name!r} (it has: {known})"
            ) from None

    def __repr__(self) -> str:
        return (
            f"<RepositoryDefinition {self.name!r}: {len(self._jobs)} jobs, "
            f"{len(self._schedules)} schedules, {len(self._sensors)} sensors>"
        )


#: The keys of Dagster's dict form, and the kind of definition each one holds.
DICT_KINDS: Dict[str, type] = {
    "jobs": JobDefinition,
    "schedules": ScheduleDefinition,
    "sensors": SensorDefinition,
}
_DEFINITION_TYPES = (JobDefinition, ScheduleDefinition, SensorDefinition)


def flatten_dict(definitions: Mapping[str, Any], owner: str) -> List[object]:
    """Dagster's dict form, `{"jobs": {name: job}, "schedules": {...}, "sensors": {...}}`, as a
    list. A value may be the definition or a function of no arguments returning it (Dagster's
    lazy form; called here, at load). Each key must be the definition's own name.
    """
    items: List[object] = []
    for key, table in definitions.items():
        kind_type = DICT_KINDS.get(key) if isinstance(key, str) else None
        if kind_type is None:
            raise DefinitionError(
                f"{owner}: unknown key {key!r} in its dict (use {', '.join(DICT_KINDS)})"
            )
        kind = key[:-1]
        if not isinstance(table, Mapping):
            raise DefinitionError(f"{owner}: {key!r} must map names to {key}, got {table!r}")
        for name, given in table.items():
            value: Any = given
            if callable(value) and not isinstance(value, _DEFINITION_TYPES):
                value = value()  # Dagster's lazy form: a function returning the definition
            if not isinstance(value, kind_type):
                raise DefinitionError(f"{owner}: {key}[{name!r}] is {value!r}, not a {kind}")
            own_name = getattr(value, "name", None)
            if own_name != name:
                raise DefinitionError(
                    f"{owner}: {key}[{name!r}] is the {kind} named {own_name!r}; "
                    "the key must be its name"
                )
            items.append(value)
    return items


def repository(
    fn: Optional[Callable[[], Sequence[object]]] = None,
    *,
    name: Optional[str] = None,
    description: Optional[str] = None,
) -> Any:
    """Make a repository: bare `@repository`, or `@repository(name=..., description=...)`."""
    if fn is not None:
        return _build(fn, name, description)

    def decorate(inner: Callable[[], Sequence[object]]) -> RepositoryDefinition:
        return _build(inner, name, description)

    return decorate


def _build(
    fn: Callable[[], Sequence[object]], name: Optional[str], description: Optional[str]
) -> RepositoryDefinition:
    if not callable(fn) or isinstance(fn, RepositoryDefinition):
        raise DefinitionError(f"@repository expects a function, got {fn!r}")
    repo_name = name if name is not None else getattr(fn, "__name__", repr(fn))
    if wants_context(fn, f"repository {repo_name!r}"):
        raise DefinitionError(f"repository {repo_name!r}: the function must take no arguments")
    if description is None:
        description = getdoc(fn)
    return RepositoryDefinition(repo_name, fn(), description=description)

"""Dagster's status enums, and the checks that turn what users write into them.

`DefaultScheduleStatus` and `DefaultSensorStatus` (a schedule's or sensor's first state,
before anyone starts or stops it) and `DagsterRunStatus` (a run's status) have Dagster's
names and values. They are `str` enums, so `status == "FAILURE"` holds as well as
`status == DagsterRunStatus.FAILURE`, and the plain strings are accepted wherever an
enum member is (any case). `str()` and f-strings give the value ("FAILURE") on every
Python version (a plain str-mixin enum gives "DagsterRunStatus.FAILURE" from `str()`,
and from f-strings too since 3.12), so a member put in tags or a message reads the same.
"""

from __future__ import annotations

from enum import Enum

from .errors import DefinitionError

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Optional, Type, TypeVar, Union


class _StrEnum(str, Enum):
    def __str__(self) -> str:
        return str.__str__(self.value)

    def __format__(self, spec: str) -> str:
        return format(str.__str__(self.value), spec)


class DefaultScheduleStatus(_StrEnum):
    """A schedule's state when nobody has started or stopped it (Dagster's enum)."""

    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class DefaultSensorStatus(_StrEnum):
    """A sensor's state when nobody has started or stopped it (Dagster's enum)."""

    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class DagsterRunStatus(_StrEnum):
    """A run's status, in the order a run goes through them (Dagster's names; wsm has no
    NOT_STARTED or MANAGED). SUCCESS, FAILURE and CANCELED are final."""

    QUEUED = "QUEUED"
    STARTING = "STARTING"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"


if TYPE_CHECKING:
    _E = TypeVar("_E", DefaultScheduleStatus, DefaultSensorStatus, DagsterRunStatus)
    StatusLike = Union[str, Enum]


def _member(value: object, kind: Type[_E]) -> Optional[_E]:
    """The member of `kind` that `value` names (a member of any of these enums with the
    same value, or a str in any case), else None."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str):
        try:
            return kind(value.strip().upper())
        except ValueError:
            return None
    return None


def check_default_status(value: object, owner: str, kind: Type[_E]) -> Optional[_E]:
    """`default_status` as a member of `kind`, or None when it was not given.

    Accepted: `DefaultScheduleStatus.RUNNING/STOPPED`, `DefaultSensorStatus.RUNNING/STOPPED`
    (either enum, since their values are the same) and the strings "RUNNING"/"STOPPED" in
    any case. DefinitionError naming `owner` otherwise.
    """
    if value is None:
        return None
    member = _member(value, kind)
    if member is None or isinstance(value, DagsterRunStatus):
        raise DefinitionError(
            f"{owner}: default_status must be {kind.__name__}.RUNNING or .STOPPED "
            f'(or "RUNNING"/"STOPPED"), got {value!r}'
        )
    return member


def check_run_status(value: object, owner: str) -> DagsterRunStatus:
    """A run status given as `DagsterRunStatus.X` or its name as a str (any case)."""
    member = _member(value, DagsterRunStatus)
    if member is None or isinstance(value, (DefaultScheduleStatus, DefaultSensorStatus)):
        names = ", ".join(s.value for s in DagsterRunStatus)
        raise DefinitionError(
            f"{owner}: run_status must be a DagsterRunStatus ({names}), got {value!r}"
        )
    return member

"""What sensors and schedules produce: `RunRequest`s, a `SkipReason`, or (sensors only)
one `SensorResult`.

`collect_requests` turns whatever a user function returned or yielded into one
checked list, so sensors and schedules share a single set of rules;
`collect_sensor_output` adds Dagster's `SensorResult` for sensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import GeneratorType

from .errors import DefinitionError
from .values import check_tags, plain_config

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union


class RunRequest:
    """Ask for one run of a job. `job_name` defaults to the sensor's or schedule's job.

    `run_key` makes the request idempotent: a scheduler launches at most one run per key.
    """

    __slots__ = ("run_key", "run_config", "tags", "job_name")

    def __init__(
        self,
        run_key: Optional[str] = None,
        run_config: Optional[Mapping[str, Any]] = None,
        tags: Optional[Mapping[str, Any]] = None,
        job_name: Optional[str] = None,
    ) -> None:
        if run_key is not None and not isinstance(run_key, str):
            raise DefinitionError(f"RunRequest: run_key must be a str or None, got {run_key!r}")
        if job_name is not None and not isinstance(job_name, str):
            raise DefinitionError(f"RunRequest: job_name must be a str or None, got {job_name!r}")
        self.run_key = run_key
        self.run_config: Dict[str, Any] = plain_config(run_config, "RunRequest")
        self.tags: Dict[str, str] = check_tags(tags, "RunRequest")
        self.job_name = job_name

    def to_dict(
        self, default_job: Optional[str], base_tags: Optional[Mapping[str, Any]] = None
    ) -> dict:
        """The protocol's form; `base_tags` (a schedule's) are overridden by the request's."""
        tags = dict(base_tags or {})
        tags.update(self.tags)
        return {
            "run_key": self.run_key,
            "run_config": self.run_config,
            "tags": tags,
            "job_name": self.job_name if self.job_name is not None else default_job,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunRequest):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{a}={getattr(self, a)!r}" for a in self.__slots__)
        return f"RunRequest({fields})"


class SkipReason:
    """Say why a sensor or schedule requests nothing this tick (shown to operators)."""

    __slots__ = ("skip_message",)

    def __init__(self, skip_message: Optional[str] = None) -> None:
        if skip_message is not None and not isinstance(skip_message, str):
            raise DefinitionError(f"SkipReason: message must be a str, got {skip_message!r}")
        self.skip_message = skip_message

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SkipReason):
            return NotImplemented
        return self.skip_message == other.skip_message

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SkipReason({self.skip_message!r})"


class SensorResult:
    """Everything one sensor tick produces, in one object (Dagster's `SensorResult`).

    `run_requests`: a list of RunRequests; `skip_reason`: a str or a SkipReason (not with
    run requests); `cursor`: a str, set as if `context.update_cursor(cursor)` had been
    called (None leaves the cursor as it is). A sensor returns it, or yields it as the only
    thing it yields. Dagster's asset and partition arguments are refused: wsm has neither.
    """

    __slots__ = ("run_requests", "skip_reason", "cursor")

    def __init__(
        self,
        run_requests: Optional[Sequence[RunRequest]] = None,
        skip_reason: Optional[Union[str, SkipReason]] = None,
        cursor: Optional[str] = None,
        dynamic_partitions_requests: Optional[Sequence[Any]] = None,
        asset_events: Optional[Sequence[Any]] = None,
        automation_condition_evaluations: Optional[Sequence[Any]] = None,
    ) -> None:
        for label, value in (
            ("dynamic_partitions_requests", dynamic_partitions_requests),
            ("asset_events", asset_events),
            ("automation_condition_evaluations", automation_condition_evaluations),
        ):
            if value:
                raise DefinitionError(
                    f"SensorResult: {label}= is not supported by wsm (it has no assets "
                    "or partitions)"
                )
        if run_requests is None:
            requests: List[RunRequest] = []
        elif isinstance(run_requests, (list, tuple)):
            requests = list(run_requests)
        else:
            raise DefinitionError(
                f"SensorResult: run_requests must be a list of RunRequest, got {run_requests!r}"
            )
        for index, item in enumerate(requests):
            if not isinstance(item, RunRequest):
                raise DefinitionError(
                    f"SensorResult: run_requests[{index}] is {item!r}, not a RunRequest"
                )
        if isinstance(skip_reason, str):
            skip_reason = SkipReason(skip_reason)
        elif skip_reason is not None and not isinstance(skip_reason, SkipReason):
            raise DefinitionError(
                f"SensorResult: skip_reason must be a str or a SkipReason, got {skip_reason!r}"
            )
        if skip_reason is not None and requests:
            raise DefinitionError(
                "SensorResult: give run_requests or a skip_reason, not both "
                "(a skip reason says why there is no run)"
            )
        if cursor is not None and not isinstance(cursor, str):
            raise DefinitionError(
                f"SensorResult: cursor must be a str or None, got {cursor!r} "
                "(serialise it, e.g. with json.dumps)"
            )
        self.run_requests: List[RunRequest] = requests
        self.skip_reason: Optional[SkipReason] = skip_reason
        self.cursor: Optional[str] = cursor

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SensorResult):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{a}={getattr(self, a)!r}" for a in self.__slots__)
        return f"SensorResult({fields})"


def collect_sensor_output(
    result: object, owner: str
) -> Tuple[List[RunRequest], Optional[SkipReason], Optional[SensorResult]]:
    """A sensor's output: (requests, skip reason, the SensorResult if it gave one).

    A SensorResult must be the only thing produced: returned, or the one item of a
    list or generator (Dagster's rule); mixed with RunRequests it is a DefinitionError.
    """
    if isinstance(result, GeneratorType):
        result = list(result)
    if isinstance(result, (list, tuple)) and any(isinstance(i, SensorResult) for i in result):
        if len(result) != 1:
            raise DefinitionError(
                f"{owner} produced a SensorResult together with {len(result) - 1} other "
                "item(s); a SensorResult must be the only thing a sensor returns or yields "
                "(put the RunRequests in SensorResult(run_requests=[...]))"
            )
        result = result[0]
    if isinstance(result, SensorResult):
        return list(result.run_requests), result.skip_reason, result
    requests, skip = collect_requests(result, owner)
    return requests, skip, None


def collect_requests(
    result: object, owner: str, allow_config: bool = False
) -> Tuple[List[RunRequest], Optional[SkipReason]]:
    """Normalise a sensor's or schedule's output.

    Accepted: None, a RunRequest, a SkipReason, or a list/tuple/generator of RunRequests
    (or of one SkipReason). With `allow_config` (schedules), a dict is the run_config of
    one request, as Dagster's legacy schedules return it.
    """
    if allow_config and isinstance(result, Mapping):
        return [RunRequest(run_config=result)], None
    if isinstance(result, SensorResult):
        raise DefinitionError(_sensor_result_misplaced(owner))
    items: Iterable[object]
    if result is None:
        items = ()
    elif isinstance(result, (RunRequest, SkipReason)):
        items = (result,)
    elif isinstance(result, (list, tuple)) or isinstance(result, GeneratorType):
        items = result  # type: ignore[assignment]
    else:
        raise DefinitionError(
            f"{owner} returned {result!r}; expected RunRequest(s), a SkipReason, a list or None"
        )
    requests: List[RunRequest] = []
    skips: List[SkipReason] = []
    for index, item in enumerate(items):
        if isinstance(item, RunRequest):
            requests.append(item)
        elif isinstance(item, SkipReason):
            skips.append(item)
        elif isinstance(item, SensorResult):
            raise DefinitionError(_sensor_result_misplaced(owner))
        else:
            raise DefinitionError(
                f"{owner} produced {item!r} at position {index}; expected RunRequest or SkipReason"
            )
    if skips and (requests or len(skips) > 1):
        raise DefinitionError(
            f"{owner} produced {len(requests)} RunRequest(s) and {len(skips)} SkipReason(s); "
            "a SkipReason must be the only thing produced"
        )
    return requests, (skips[0] if skips else None)


def _sensor_result_misplaced(owner: str) -> str:
    return (
        f"{owner} produced a SensorResult, which only a sensor may return (as in Dagster); "
        "return RunRequest(s), a SkipReason or None"
    )

"""What sensors and schedules produce: `RunRequest`s or a `SkipReason`.

`collect_requests` turns whatever a user function returned or yielded into one
checked list, so sensors and schedules share a single set of rules.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .errors import DefinitionError
from .values import check_tags, plain_config


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

    def to_dict(self, default_job: str, base_tags: Optional[Mapping[str, Any]] = None) -> dict:
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
    items: Iterable[object]
    if result is None:
        items = ()
    elif isinstance(result, (RunRequest, SkipReason)):
        items = (result,)
    elif isinstance(result, (list, tuple)) or inspect.isgenerator(result):
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

"""Which queued runs may start now: a pure function of the queue, the runs in progress,
the limits and which locations are ready (docs/daemon.md, "Runs").

Order: tag `wsm/priority` (an int, higher first), then `created_at`, then run id (Dagster's
queued run coordinator orders by its `dagster/priority` tag the same way). A run that cannot
start now does not hold back the runs after it, unless the workspace-wide limit is
reached: a run whose location is not ready, whose location is at its own limit or that a
tag limit blocks waits while others go, as Dagster's coordinator skips blocked runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Callable,
    Collection,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from workspace_manager.workspace.model import TagConcurrencyLimit

if TYPE_CHECKING:  # `wsm job execute` checks a priority before its run's process starts
    from workspace_manager.storage.records import RunRecord

PRIORITY_TAG = "wsm/priority"
MAX_RETRIES_TAG = "wsm/max_retries"
TIMEOUT_TAG = "wsm/timeout_seconds"
#: A priority is kept in a 64-bit column (SQLite INTEGER, PostgreSQL BIGINT).
PRIORITY_LIMIT = 2**63 - 1


class BadTag(ValueError):
    """A `wsm/...` tag whose value wsm cannot use (one line naming the tag)."""


class BadPriority(BadTag):
    """A `wsm/priority` tag that is not an integer."""


def priority_of(tags: Mapping[str, str]) -> int:
    """The run's priority from its `wsm/priority` tag (0 without one); BadPriority if the
    tag is not an integer."""
    value = tags.get(PRIORITY_TAG)
    if value is None:
        return 0
    try:
        priority = int(str(value).strip())
    except ValueError:
        raise BadPriority(f"tag {PRIORITY_TAG} must be an integer, got {value!r}") from None
    if not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT:  # stored as a 64-bit integer
        raise BadPriority(
            f"tag {PRIORITY_TAG} must be from -{PRIORITY_LIMIT} to {PRIORITY_LIMIT}, got {value!r}"
        )
    return priority


def number_tag(tags: Mapping[str, str], key: str) -> Optional[float]:
    """The tag's number (`wsm/timeout_seconds`, `wsm/max_retries`), None without it;
    BadTag naming the tag when it is not a finite number at least 0."""
    value = tags.get(key)
    if value is None:
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise BadTag(f"tag {key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise BadTag(f"tag {key} must be a finite number, got {value!r}")
    if number < 0:
        raise BadTag(f"tag {key} must not be negative, got {value!r}")
    return number


def check_tags(tags: Mapping[str, str]) -> int:
    """Check every `wsm/...` tag wsm reads (priority, max_retries, timeout_seconds) as a run
    is queued; the run's priority. BadTag (one line) for the first bad one: the CLI
    (exit 2), the API (400), the control socket and a tick's RunRequests all call this."""
    priority = priority_of(tags)
    number_tag(tags, MAX_RETRIES_TAG)
    number_tag(tags, TIMEOUT_TAG)
    return priority


def effective_priority(run: RunRecord) -> int:
    """The run's stored priority, else its `wsm/priority` tag (a run queued by other code
    may have set only the tag); a tag that is not an integer counts as 0."""
    if run.priority:
        return run.priority
    try:
        return priority_of(run.tags)
    except BadPriority:
        return 0


def queue_order(runs: Sequence[RunRecord]) -> List[RunRecord]:
    """Runs in the order they may start: priority (higher first), created_at, run id."""
    return sorted(runs, key=lambda r: (-effective_priority(r), r.created_at, r.run_id))


@dataclass(frozen=True)
class Limits:
    """`daemon.max_concurrent_runs` (None: no limit), each location's own limit, and the
    tag limits."""

    max_concurrent_runs: Optional[int] = None
    per_location: Mapping[str, int] = field(default_factory=dict)
    tags: Tuple[TagConcurrencyLimit, ...] = ()


def _matches(limit: TagConcurrencyLimit, tags: Mapping[str, str]) -> bool:
    if limit.key not in tags:
        return False
    return limit.value is None or tags[limit.key] == limit.value


def runs_to_start(
    queued: Sequence[RunRecord],
    in_progress: Sequence[RunRecord],
    limits: Limits,
    ready: Callable[[str], bool],
) -> List[RunRecord]:
    """The queued runs to start now, in order. `in_progress`: the runs that hold a slot
    (STARTING, STARTED, CANCELING); `ready(location)`: may that location's runs start."""
    total = len(in_progress)
    per_location: Dict[str, int] = {}
    per_tag: List[int] = [0] * len(limits.tags)
    for run in in_progress:
        per_location[run.location] = per_location.get(run.location, 0) + 1
        for i, limit in enumerate(limits.tags):
            if _matches(limit, run.tags):
                per_tag[i] += 1
    chosen: List[RunRecord] = []
    for run in queue_order(queued):
        if limits.max_concurrent_runs is not None and total >= limits.max_concurrent_runs:
            break
        if not ready(run.location):
            continue
        own = limits.per_location.get(run.location)
        if own is not None and per_location.get(run.location, 0) >= own:
            continue
        hits = [i for i, limit in enumerate(limits.tags) if _matches(limit, run.tags)]
        if any(per_tag[i] >= limits.tags[i].limit for i in hits):
            continue
        chosen.append(run)
        total += 1
        per_location[run.location] = per_location.get(run.location, 0) + 1
        for i in hits:
            per_tag[i] += 1
    return chosen


def location_limits(limits: Collection[Tuple[str, Optional[int]]]) -> Dict[str, int]:
    """{location: its own max_concurrent_runs} for the locations that set one."""
    return {name: n for name, n in limits if n is not None}

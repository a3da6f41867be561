"""runs/queue.py: the order of the queue and its limits, as pure functions."""

from __future__ import annotations

from typing import Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workspace_manager.runs.queue import (
    BadPriority,
    Limits,
    priority_of,
    queue_order,
    runs_to_start,
)
from workspace_manager.storage.records import STARTED, RunRecord
from workspace_manager.workspace.model import TagConcurrencyLimit


def run(
    rid: str, location: str = "a", created: float = 0.0, tags: Dict[str, str] = None
) -> RunRecord:
    tags = dict(tags or {})
    return RunRecord(
        run_id=rid,
        location=location,
        job="j",
        tags=tags,
        priority=priority_of(tags),
        created_at=created,
    )


def ids(runs: List[RunRecord]) -> List[str]:
    return [r.run_id for r in runs]


def always(_: str) -> bool:
    return True


def test_priority_tag_then_creation_order() -> None:
    runs = [
        run("old", created=1),
        run("new", created=2),
        run("urgent", created=3, tags={"wsm/priority": "5"}),
        run("low", created=0, tags={"wsm/priority": "-1"}),
    ]
    assert ids(queue_order(runs)) == ["urgent", "old", "new", "low"]
    assert ids(runs_to_start(runs, [], Limits(max_concurrent_runs=2), always)) == ["urgent", "old"]


def test_priority_must_be_an_integer() -> None:
    assert priority_of({"wsm/priority": " 3 "}) == 3
    assert priority_of({}) == 0
    with pytest.raises(BadPriority, match="wsm/priority must be an integer"):
        priority_of({"wsm/priority": "high"})


def test_global_limit_counts_runs_in_progress() -> None:
    queued = [run("q1", created=1), run("q2", created=2)]
    busy = [run("b1", created=0)]
    assert ids(runs_to_start(queued, busy, Limits(max_concurrent_runs=2), always)) == ["q1"]
    assert runs_to_start(queued, busy * 2, Limits(max_concurrent_runs=2), always) == []
    assert ids(runs_to_start(queued, busy * 5, Limits(), always)) == ["q1", "q2"]


def test_a_location_that_is_not_ready_waits_without_blocking_others() -> None:
    queued = [run("a1", "a", 1), run("b1", "b", 2), run("a2", "a", 3)]
    assert ids(runs_to_start(queued, [], Limits(10), lambda loc: loc == "b")) == ["b1"]


def test_location_limit() -> None:
    queued = [run("a1", "a", 1), run("a2", "a", 2), run("b1", "b", 3)]
    limits = Limits(10, per_location={"a": 1})
    assert ids(runs_to_start(queued, [], limits, always)) == ["a1", "b1"]
    assert ids(runs_to_start(queued, [run("x", "a")], limits, always)) == ["b1"]


def test_tag_limit_with_and_without_value() -> None:
    prod = {"database": "prod"}
    dev = {"database": "dev"}
    queued = [
        run("p1", created=1, tags=prod),
        run("p2", created=2, tags=prod),
        run("d1", created=3, tags=dev),
    ]
    by_value = Limits(10, tags=(TagConcurrencyLimit("database", 1, "prod"),))
    assert ids(runs_to_start(queued, [], by_value, always)) == ["p1", "d1"]
    any_value = Limits(10, tags=(TagConcurrencyLimit("database", 2),))
    assert ids(runs_to_start(queued, [], any_value, always)) == ["p1", "p2"]
    busy = [run("b", tags=dev)]
    assert ids(runs_to_start(queued, busy, any_value, always)) == ["p1"]


LOCATIONS = ["a", "b", "c"]
TAG_VALUES = [None, "x", "y"]


@st.composite
def scenarios(draw):  # type: ignore[no-untyped-def]
    def some_run(i: int) -> RunRecord:
        tags = {}
        value = draw(st.sampled_from(TAG_VALUES))
        if value is not None:
            tags["t"] = value
        if draw(st.booleans()):
            tags["wsm/priority"] = str(draw(st.integers(-2, 2)))
        return run(f"r{i:03d}", draw(st.sampled_from(LOCATIONS)), draw(st.integers(0, 5)), tags)

    queued = [some_run(i) for i in range(draw(st.integers(0, 12)))]
    busy = [some_run(100 + i) for i in range(draw(st.integers(0, 6)))]
    tag_limits = tuple(
        TagConcurrencyLimit("t", draw(st.integers(0, 3)), draw(st.sampled_from(TAG_VALUES)))
        for _ in range(draw(st.integers(0, 2)))
    )
    per_location = {loc: draw(st.integers(0, 3)) for loc in LOCATIONS if draw(st.booleans())}
    limits = Limits(draw(st.one_of(st.none(), st.integers(0, 8))), per_location, tag_limits)
    ready = {loc for loc in LOCATIONS if draw(st.booleans())}
    return queued, busy, limits, ready


def _fits(candidate: RunRecord, holding: List[RunRecord], limits: Limits) -> bool:
    """Would `candidate` start without breaking a limit, given `holding` the slots?"""
    after = holding + [candidate]
    if limits.max_concurrent_runs is not None and len(after) > limits.max_concurrent_runs:
        return False
    own = limits.per_location.get(candidate.location)
    if own is not None and sum(r.location == candidate.location for r in after) > own:
        return False
    for limit in limits.tags:

        def hit(r: RunRecord, limit: TagConcurrencyLimit = limit) -> bool:
            return "t" in r.tags and (limit.value is None or r.tags["t"] == limit.value)

        if hit(candidate) and sum(hit(r) for r in after) > limit.limit:
            return False
    return True


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_greedy_in_order_within_every_limit(scenario) -> None:  # type: ignore[no-untyped-def]
    """The answer is exactly the greedy pass over the queue in its order: each run starts
    when its location is ready and it fits every limit given the runs before it; once the
    workspace-wide limit is reached nothing more starts."""
    queued, busy, limits, ready = scenario
    chosen = runs_to_start(queued, busy, limits, lambda loc: loc in ready)
    holding = list(busy)
    expected = []
    for candidate in queue_order(queued):
        if limits.max_concurrent_runs is not None and len(holding) >= limits.max_concurrent_runs:
            break
        if candidate.location in ready and _fits(candidate, holding, limits):
            expected.append(candidate)
            holding.append(candidate)
    assert ids(chosen) == ids(expected)
    # and nothing chosen breaks a limit, counted from scratch
    final = list(busy)
    for c in chosen:
        assert _fits(c, final, limits) or busy_over(busy, limits)
        final.append(c)


def busy_over(busy: List[RunRecord], limits: Limits) -> bool:
    """Runs already in progress may exceed a limit lowered by a reload; then nothing of
    theirs can be blamed on the queue."""
    return any(not _fits(r, busy[:i], limits) for i, r in enumerate(busy))


def test_status_of_records_is_ignored() -> None:
    # the coordinator passes what holds a slot; the function does not look at status
    assert (
        ids(
            runs_to_start([run("q")], [RunRecord("x", "a", "j", status=STARTED)], Limits(1), always)
        )
        == []
    )


def test_a_run_with_only_the_priority_tag_is_ordered_by_it() -> None:
    tagged = RunRecord("t", "a", "j", tags={"wsm/priority": "3"}, created_at=5)
    bad = RunRecord("b", "a", "j", tags={"wsm/priority": "x"}, created_at=0)
    assert ids(queue_order([run("plain", created=1), tagged, bad])) == ["t", "b", "plain"]

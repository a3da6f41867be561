from __future__ import annotations

import dataclasses
import itertools

import pytest

from workspace_manager.http.view import STATES, LocationView, ManagerView


def view(*states: str) -> ManagerView:
    return ManagerView(
        alive=True,
        started_at=0.0,
        locations=tuple(LocationView(name=f"l{i}", state=s) for i, s in enumerate(states)),
    )


@pytest.mark.parametrize(
    "states, expected",
    [
        ((), "ok"),
        (("ready",), "ok"),
        (("ready", "ready", "ready"), "ok"),
        (("building",), "starting"),
        (("ready", "starting"), "starting"),
        (("starting", "stopped"), "starting"),
        (("starting", "error"), "degraded"),
        (("building", "backoff"), "degraded"),
        (("starting", "failed"), "degraded"),
        (("ready", "stopped"), "degraded"),
        (("ready", "mystery"), "degraded"),
    ],
)
def test_overall_status(states, expected):
    assert view(*states).overall_status() == expected


def test_overall_status_agrees_with_its_rule_for_every_pair_of_states():
    for states in itertools.product(STATES, repeat=2):
        got = view(*states).overall_status()
        if all(s == "ready" for s in states):
            assert got == "ok"
        elif any(s in ("building", "starting") for s in states) and not any(
            s in ("error", "failed", "backoff") for s in states
        ):
            assert got == "starting"
        else:
            assert got == "degraded", states


def test_location_lookup_and_frozen():
    v = view("ready", "error")
    assert v.location("l1") == LocationView(name="l1", state="error")
    assert v.location("nope") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.alive = False  # type: ignore[misc]

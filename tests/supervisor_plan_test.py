"""The launch plan's environment (supervisor/plan.py): wsm's own, scrubbed, decoded once and
reused while the process environment is unchanged; a change made since shows at once."""

from __future__ import annotations

import os

import pytest

from workspace_manager.supervisor import plan


def test_the_scrubbed_environment_follows_every_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSM_PLAN_TEST", "one")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    first = plan._scrubbed_environ()
    assert first["WSM_PLAN_TEST"] == "one" and "PYTHONPATH" not in first
    first["WSM_PLAN_TEST"] = "edited by a caller"  # each call gets a dict of its own
    assert plan._scrubbed_environ()["WSM_PLAN_TEST"] == "one"
    monkeypatch.setenv("WSM_PLAN_TEST", "two")
    assert plan._scrubbed_environ()["WSM_PLAN_TEST"] == "two"
    monkeypatch.delenv("WSM_PLAN_TEST")
    assert "WSM_PLAN_TEST" not in plan._scrubbed_environ()
    expected = {k: v for k, v in os.environ.items() if k not in plan.SCRUBBED_VARS}
    assert plan._scrubbed_environ() == expected

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


def test_wsm_secret_vars_reads_the_workspace_once_per_workspace(tmp_path) -> None:
    """Asked at every location start, it must not read every location each time (1,000
    starts read a million); a new workspace (a reload) is read anew."""
    from workspace_manager.supervisor.secret_vars import wsm_secret_vars
    from workspace_manager.workspace.model import (
        LocationConfig,
        RemoteTarget,
        Supervision,
        Workspace,
    )

    class Counting(tuple):
        reads = 0

        def __iter__(self):  # type: ignore[no-untyped-def]
            Counting.reads += 1
            return super().__iter__()

    def workspace(token: str) -> Workspace:
        target = RemoteTarget(host="localhost", port=1, token_env=token)
        config = LocationConfig("remote", target, Supervision())  # type: ignore[arg-type]
        return Workspace(None, tmp_path, Counting((config,)))

    first = workspace("TOKEN_A")
    for _ in range(50):
        assert wsm_secret_vars(first, ("EXTRA",)) == {"TOKEN_A", "EXTRA"}
    assert Counting.reads == 1
    assert wsm_secret_vars(first) == {"TOKEN_A"}  # other extras: read again
    assert wsm_secret_vars(workspace("TOKEN_B"), ("EXTRA",)) == {"TOKEN_B", "EXTRA"}
    assert Counting.reads == 3

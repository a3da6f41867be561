"""The restart policy as pure functions of (history, now), replayed with a fake clock."""

from __future__ import annotations

import random

import pytest

from workspace_manager.supervisor.policy import (
    ExitInfo,
    RestartHistory,
    backoff_delay,
    next_step,
    should_restart,
)
from workspace_manager.workspace.model import Supervision

CRASH = ExitInfo(1, "exited with status 1")
CLEAN = ExitInfo(0, "exited with status 0", clean=True)


@pytest.mark.parametrize(
    "policy,exit_info,expected",
    [
        ("always", CRASH, True),
        ("always", CLEAN, True),
        ("on-failure", CRASH, True),
        ("on-failure", CLEAN, False),
        ("never", CRASH, False),
        ("never", CLEAN, False),
    ],
)
def test_should_restart(policy: str, exit_info: ExitInfo, expected: bool) -> None:
    assert should_restart(policy, exit_info) is expected


def test_backoff_doubles_and_caps_with_bounded_jitter() -> None:
    sup = Supervision(backoff_initial_seconds=0.5, backoff_max_seconds=4)
    rng = random.Random(7)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (12, 4.0)]:
        for _ in range(50):
            d = backoff_delay(attempt, sup, rng)
            assert 0.8 * base <= d <= min(1.2 * base, 4.0)


def test_crash_loop_fails_after_max_restarts_within_window() -> None:
    sup = Supervision(max_restarts=3, window_seconds=60)
    history = RestartHistory()
    now = 1000.0
    actions = []
    for _ in range(5):
        history.record_ready(now)
        now += 2  # crashes two seconds after becoming ready
        action, delay = next_step(history, CRASH, sup, now, random.Random(1))
        actions.append(action)
        if action == "restart":
            now += delay
            history.record_restart(now)
    assert actions == ["restart", "restart", "restart", "fail", "fail"]


def test_late_crashes_still_back_off_but_count_resets_after_a_clean_window() -> None:
    sup = Supervision(max_restarts=2, window_seconds=10, backoff_initial_seconds=1)
    history = RestartHistory()
    now = 0.0
    for _ in range(10):  # a location that crashes every 30 s never fails...
        history.record_ready(now)
        now += 30
        action, delay = next_step(history, CRASH, sup, now, random.Random(3))
        assert action == "restart"
        assert delay >= 0.8  # ...but is never restarted without a delay (supervisord's flaw)
        now += delay
        history.record_restart(now)


def test_window_only_counts_recent_restarts() -> None:
    sup = Supervision(max_restarts=2, window_seconds=10)
    history = RestartHistory(restarts=[0.0, 1.0])
    assert next_step(history, CRASH, sup, 5.0)[0] == "fail"
    assert next_step(history, CRASH, sup, 10.5)[0] == "restart"


def test_clean_exit_under_on_failure_stops() -> None:
    assert next_step(RestartHistory(), CLEAN, Supervision(), 0.0) == ("stop", None)


def test_keep_trying_never_fails_and_settles_at_the_longest_backoff() -> None:
    """A remote server that stays unreachable for an hour: retried all along, at the longest
    backoff once max_restarts is spent, with a bounded history."""
    sup = Supervision(max_restarts=5, window_seconds=60, backoff_max_seconds=30)
    history = RestartHistory()
    rng = random.Random(5)
    now, delays = 0.0, []
    while now < 3600:
        action, delay = next_step(history, CRASH, sup, now, rng, keep_trying=True)
        assert action == "restart"
        delays.append(delay)
        now += delay
        history.record_restart(now, sup.window_seconds)
    assert delays[:5] == sorted(delays[:5])  # doubling first
    assert all(d >= 0.8 * 30 for d in delays[7:])  # then at the longest backoff, no dip
    assert len(history.restarts) <= 3


def test_keep_trying_starts_over_once_ready() -> None:
    sup = Supervision(max_restarts=2, backoff_initial_seconds=1, backoff_max_seconds=30)
    history = RestartHistory()
    for t in range(10):
        history.record_restart(t * 100.0, sup.window_seconds)
    history.record_ready(1000.0)
    action, delay = next_step(history, CRASH, sup, 2000.0, random.Random(1), keep_trying=True)
    assert action == "restart" and delay <= 1.2

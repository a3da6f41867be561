"""Restart policy as pure functions of (history, now): easy to test with a fake clock.

Unlike supervisord, backoff applies to every restart, also to a process that crashed long
after it became ready; the count only resets after a clean run of ``window_seconds``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import List, Optional

from workspace_manager.workspace.model import Supervision


@dataclass(frozen=True)
class ExitInfo:
    """Why a location's process went away."""

    returncode: Optional[int]  # None: still running when we gave up on it
    reason: str  # e.g. "exited with status 3", "killed by SIGSEGV", "missed 3 heartbeats"
    clean: bool = False  # exited 0 on its own (restart: on-failure leaves it stopped)


def should_restart(policy: str, exit_info: ExitInfo) -> bool:
    if policy == "never":
        return False
    if policy == "on-failure":
        return not exit_info.clean
    return True  # always


def backoff_delay(attempt: int, sup: Supervision, rng: Optional[random.Random] = None) -> float:
    """Delay before restart number ``attempt`` (1-based): doubling, capped, with +-20% jitter."""
    base = sup.backoff_initial_seconds * (2 ** min(max(0, attempt - 1), 64))
    base = min(base, sup.backoff_max_seconds)
    jitter = (rng or random).uniform(0.8, 1.2)
    return max(0.0, min(base * jitter, sup.backoff_max_seconds))


@dataclass
class RestartHistory:
    """Times of recent restarts and of the last start, to spot crash loops."""

    restarts: List[float] = field(default_factory=list)
    last_ready_at: Optional[float] = None
    total: int = 0
    since_ready: int = 0  # restarts since the location was last ready

    def record_ready(self, now: float) -> None:
        self.last_ready_at = now
        self.since_ready = 0

    def forget_if_stable(self, now: float, window: float) -> None:
        """A location that ran cleanly for a whole window starts counting from zero again."""
        if self.last_ready_at is not None and now - self.last_ready_at >= window:
            self.restarts.clear()

    def attempts_in_window(self, now: float, window: float) -> int:
        return sum(1 for t in self.restarts if now - t < window)

    def record_restart(self, now: float, window: Optional[float] = None) -> None:
        """``window``: forget restarts older than this, so a location retried forever keeps
        a bounded history."""
        if window is not None:
            self.restarts = [t for t in self.restarts if now - t < window]
        self.restarts.append(now)
        self.total += 1
        self.since_ready += 1


def next_step(
    history: RestartHistory,
    exit_info: ExitInfo,
    sup: Supervision,
    now: float,
    rng: Optional[random.Random] = None,
    keep_trying: bool = False,
) -> tuple:
    """Decide what follows an exit: ("stop", None), ("fail", None) or ("restart", delay).

    ``keep_trying``: never "fail"; past ``max_restarts`` retry at the longest backoff. For a
    remote server, which its orchestrator restarts and which comes back by itself, as a
    Kubernetes client keeps retrying a Service that has no ready endpoint.
    """
    if not should_restart(sup.restart, exit_info):
        return ("stop", None)
    history.forget_if_stable(now, sup.window_seconds)
    attempt = history.attempts_in_window(now, sup.window_seconds) + 1
    if keep_trying:
        # the window forgets slow retries; the streak since the last ready does not
        attempt = max(attempt, history.since_ready + 1)
        if attempt > sup.max_restarts:
            return ("restart", backoff_delay(attempt, sup, rng))
    if attempt > sup.max_restarts:
        return ("fail", None)
    return ("restart", backoff_delay(attempt, sup, rng))

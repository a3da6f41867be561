"""The read-only snapshot of the manager that the health endpoint answers from.

The manager builds a `ManagerView` from its own state on its event loop and
hands the server a callable returning the latest one. The server never talks to
a location, so a hung location cannot slow an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

STATES = ("building", "starting", "ready", "error", "backoff", "failed", "stopped")
_IN_PROGRESS = frozenset({"building", "starting"})
_BROKEN = frozenset({"error", "failed", "backoff"})


@dataclass(frozen=True)
class LocationView:
    """One location as the manager last saw it; all fields are plain JSON-able values."""

    name: str
    state: str  # one of STATES
    pid: Optional[int] = None
    restarts: int = 0
    python: Optional[str] = None  # e.g. "3.11.2"
    environment: Optional[str] = None  # env cache key, or the executable path used as is
    uptime_seconds: Optional[float] = None  # since the current process became ready
    down_seconds: Optional[float] = None  # while not ready: since it stopped serving
    rss_bytes: Optional[int] = None
    error: Optional[str] = None  # one-line reason for error/backoff/failed
    traceback: Optional[str] = None
    # the latest state changes, oldest first: {"at": unix time, "from", "to", "reason"}
    transitions: Tuple[Dict[str, Any], ...] = ()

    @property
    def ready(self) -> bool:
        return self.state == "ready"


@dataclass(frozen=True)
class ManagerView:
    """The whole manager: is its supervision loop alive, since when, and every location.

    `started_at` is wall-clock time (`time.time()`) at which the manager started.
    """

    alive: bool
    started_at: float
    locations: Tuple[LocationView, ...] = ()

    def location(self, name: str) -> Optional[LocationView]:
        for loc in self.locations:
            if loc.name == name:
                return loc
        return None

    def overall_status(self) -> str:
        """ "ok" when every location is ready (or there are none); "starting" while one is
        building or starting and none is in error, backoff or failed; else "degraded"."""
        states = {loc.state for loc in self.locations}
        if states <= {"ready"}:
            return "ok"
        if states & _IN_PROGRESS and not states & _BROKEN:
            return "starting"
        return "degraded"

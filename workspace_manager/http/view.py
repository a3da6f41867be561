"""The read-only snapshot of the manager that the health endpoint answers from.

The manager builds a `ManagerView` from its own state on its event loop and
hands the server a callable returning the latest one. The server never talks to
a location, so a hung location cannot slow an answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

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
    # a reload whose successor failed to load while this one kept serving:
    # {"at": unix time, "error": str, "traceback": str or None}
    reload_error: Optional[Dict[str, Any]] = None
    log: Optional[str] = None  # the location's log file (`wsm logs NAME`)

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
    pid: Optional[int] = None
    # what the manager runs: {"workspace": path} or {"python_file": path, "attribute"} or
    # {"module_name", "attribute", "working_directory"}
    target: Dict[str, Any] = field(default_factory=dict)
    health: Optional[str] = None  # HOST:PORT of the health endpoint
    # runs and the daemon, when the manager keeps runs (`wsm up`): {"enabled": daemon on,
    # "last_loop": wall time of its last pass or None, "runs": {STATUS: count},
    # "queue_length", "in_progress"}; None otherwise
    daemon: Optional[Dict[str, Any]] = None

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


def status_document(view: ManagerView, now: float) -> Dict[str, Any]:
    """The one status document: `GET /status`, the control socket's `status` and
    `wsm status --json` all answer with it. `now` is wall-clock time (`time.time()`)."""
    target = dict(view.target)
    return {
        "status": view.overall_status(),
        "alive": view.alive,
        "pid": view.pid,
        "workspace": target.get("workspace") or target.get("python_file"),
        "target": target,
        "uptime_seconds": seconds(now - view.started_at),
        "health": view.health,
        "locations": {loc.name: location_document(loc) for loc in view.locations},
        "daemon": dict(view.daemon) if view.daemon is not None else None,
    }


def location_document(loc: LocationView) -> Dict[str, Any]:
    return {
        "state": loc.state,
        "pid": loc.pid,
        "restarts": loc.restarts,
        "python": loc.python,
        "environment": loc.environment,
        "uptime_seconds": seconds(loc.uptime_seconds),
        "down_seconds": seconds(loc.down_seconds),
        "rss_bytes": loc.rss_bytes,
        "error": loc.error,
        "traceback": loc.traceback,
        "reload_error": dict(loc.reload_error) if loc.reload_error else None,
        "transitions": list(loc.transitions),
        "log": loc.log,
    }


def seconds(value: Optional[float]) -> Optional[float]:
    """A duration fit for JSON: rounded to milliseconds, never negative, None if unknown."""
    if value is None or not math.isfinite(value):
        return None
    return round(max(value, 0.0), 3)


class ReadinessViews:
    """What `/readyz` reads of every location (name, state, error, down_seconds), made
    once per change of the location, not at every request.

    A full `ManagerView` costs tens of microseconds a location (uptime, memory, the latest
    transitions); a probe polling `/readyz` while 1,000 locations start built one every
    time, and those answers were most of the manager's loop. Here a location's slim view is
    kept until its latest transition or its error changes; only a location that is down
    after having served (`down_seconds` grows with the clock) is made anew at each call.
    When nothing changed, `locations()` returns the very same tuple, so an answer built
    from it can be reused (web/probes.py).

    `source()` yields the manager's locations: objects with `name`, `state` (an enum whose
    `value` is one of STATES), `error`, `transitions` (a sequence, latest last) and
    `down_for()` (seconds or None), as `supervisor.location.Location`.
    """

    def __init__(self, source: Callable[[], Iterable[Any]]) -> None:
        self._source = source
        self._views: Dict[str, Tuple[Any, Any, LocationView]] = {}
        self._last: Tuple[LocationView, ...] = ()

    def locations(self) -> Tuple[LocationView, ...]:
        views = []
        kept = self._views
        for loc in self._source():
            last = loc.transitions[-1] if loc.transitions else None
            error = loc.error
            cached = kept.get(loc.name)
            down = loc.down_for()
            if (
                cached is None
                or cached[0] is not last
                or cached[1] is not error
                or down is not None
            ):
                state = loc.state.value
                cached = kept[loc.name] = (
                    last,
                    error,
                    LocationView(
                        name=loc.name,
                        state=state,
                        error=error if state != "ready" else None,
                        down_seconds=down,
                    ),
                )
            views.append(cached[2])
        previous = self._last
        if len(views) == len(previous) and all(a is b for a, b in zip(views, previous)):
            return previous
        if len(kept) > 2 * len(views) + 16:  # locations removed by reloads
            names = {v.name for v in views}
            for name in [n for n in kept if n not in names]:
                del kept[name]
        self._last = tuple(views)
        return self._last

"""The records the daemon keeps: runs, their status history and log lines, schedule and
sensor state, ticks. Plain dataclasses; every storage backend (storage/base.py) returns
these, and the CLI and the JSON API print their `as_dict()`.

Times are Unix seconds (float, UTC). Statuses and their order are Dagster's
(`DagsterRunStatus`: QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELING, CANCELED).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

QUEUED = "QUEUED"
STARTING = "STARTING"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
CANCELING = "CANCELING"
CANCELED = "CANCELED"

RUN_STATUSES = (QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELING, CANCELED)
#: A run in one of these never changes again.
FINAL_STATUSES = frozenset({SUCCESS, FAILURE, CANCELED})
#: A run in one of these has (or is about to have) a process.
IN_PROGRESS_STATUSES = frozenset({STARTING, STARTED, CANCELING})

SCHEDULE = "schedule"
SENSOR = "sensor"
INSTIGATOR_KINDS = (SCHEDULE, SENSOR)

RUNNING = "RUNNING"
STOPPED = "STOPPED"

# Tick results (Dagster's TickStatus, lower-case as in SPEC section 7).
TICK_STARTED = "started"
TICK_SUCCESS = "success"
TICK_SKIPPED = "skipped"
TICK_FAILURE = "failure"


class _Record:
    def as_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (the shape of the JSON API and of `--json`)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass
class RunRecord(_Record):
    """One run of one job.

    `origin`: who launched it, as a JSON object:
      {"kind": "manual", "user": "alice", "host": "box", "via": "cli" | "api"}
      {"kind": "execute", "user": ..., "host": ...}        (`wsm job execute`)
      {"kind": "schedule", "name": S, "tick_id": N, "scheduled_time": T}
      {"kind": "sensor", "name": S, "tick_id": N, "run_key": K or None}
      {"kind": "retry", "parent_run_id": ID, "attempt": N}
    `signal` is the number of the signal that ended the process (None if it exited).
    `end_seq` is given when the run reaches a final state, from one increasing counter:
    run status sensors read finished runs in that order (their cursor).
    """

    run_id: str
    location: str
    job: str
    status: str = QUEUED
    repository: Optional[str] = None
    run_config: Dict[str, Any] = field(default_factory=dict)
    tags: Dict[str, str] = field(default_factory=dict)
    origin: Dict[str, Any] = field(default_factory=dict)
    run_key: Optional[str] = None
    parent_run_id: Optional[str] = None
    attempt: int = 0
    priority: int = 0
    created_at: float = 0.0
    start_time: Optional[float] = None  # STARTING: the process was asked for
    started_at: Optional[float] = None  # STARTED: the job's function is about to run
    ended_at: Optional[float] = None
    pid: Optional[int] = None
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    error: Optional[str] = None  # one line
    traceback: Optional[str] = None
    end_seq: Optional[int] = None
    updated_at: float = 0.0

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


def queued_message(origin: Optional[Dict[str, Any]]) -> str:
    """The message of a run's QUEUED event: who launched it, in words (RunRecord.origin):
    `queued (manual by alice)`, `queued (schedule nightly, tick 12)`,
    `queued (sensor watch, tick 7, run_key k1)`, `queued (retry 2 of 0f3c...)`."""
    origin = origin or {}
    kind = str(origin.get("kind") or "manual")
    if kind in (SCHEDULE, SENSOR):
        words = [f"{kind} {origin.get('name') or '?'}"]
        if origin.get("tick_id") is not None:
            words.append(f"tick {origin['tick_id']}")
        if origin.get("run_key") is not None:
            words.append(f"run_key {origin['run_key']}")
        return f"queued ({', '.join(words)})"
    if kind == "retry":
        return f"queued (retry {origin.get('attempt', '?')} of {origin.get('parent_run_id')})"
    who = origin.get("user")
    if who:
        return f"queued ({kind} by {who})"
    peer = origin.get("peer")
    return (
        f"queued ({kind} via {origin.get('via') or '?'} from {peer})"
        if peer
        else f"queued ({kind})"
    )


@dataclass
class RunEvent(_Record):
    """One step of a run's status history."""

    run_id: str
    time: float
    status: str
    message: str = ""


@dataclass
class LogLine(_Record):
    """One line of a run's output. `stream`: "stdout", "stderr", "log" (context.log) or
    "wsm" (what the manager says about the run). `seq` is given by the storage, increasing
    per run, and is what `--follow` and the API page by."""

    run_id: str
    time: float
    stream: str
    text: str
    level: Optional[str] = None  # for "log": DEBUG, INFO, WARNING, ERROR, CRITICAL
    seq: int = 0


@dataclass
class InstigatorState(_Record):
    """What is kept of one schedule or sensor across restarts.

    `status` is None until someone starts or stops it: then the code's `default_status`
    (or the workspace's `daemon.default_status`) decides. `last_tick_time`: for a schedule,
    the last scheduled time it handled (its catch-up starts after it); for a sensor, the
    start of its last evaluation. `cursor` and `last_run_key` are a sensor's (a run status
    sensor's cursor is the `end_seq` of the last run it was given, as text)."""

    location: str
    name: str
    kind: str
    status: Optional[str] = None
    cursor: Optional[str] = None
    last_run_key: Optional[str] = None
    last_tick_time: Optional[float] = None
    updated_at: float = 0.0


@dataclass
class TickRecord(_Record):
    """One evaluation of a schedule or sensor.

    `tick_time`: the scheduled time for a schedule, the evaluation's start for a sensor.
    `run_keys_skipped`: run keys the sensor asked for that had launched before."""

    location: str
    name: str
    kind: str
    tick_time: float
    status: str = TICK_STARTED
    tick_id: int = 0  # given by the storage
    started_at: float = 0.0
    ended_at: Optional[float] = None
    skip_reason: Optional[str] = None
    error: Optional[str] = None
    cursor: Optional[str] = None
    run_ids: List[str] = field(default_factory=list)
    run_keys: List[str] = field(default_factory=list)
    run_keys_skipped: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Retention:
    """How long records are kept, in days; None keeps them forever. A run's log lines may
    go before the run's record does."""

    runs_days: Optional[float] = 90.0
    logs_days: Optional[float] = 30.0
    ticks_days: Optional[float] = 7.0
    skipped_ticks_days: Optional[float] = 1.0  # a sensor skipping every 30 s makes many

"""The records the daemon keeps: runs, their status history and log lines, schedule and
sensor state, ticks. Plain dataclasses; every storage backend (storage/base.py) returns
these, and the CLI and the JSON API print their `as_dict()`.

Times are Unix seconds (float, UTC). Statuses and their order are Dagster's
(`DagsterRunStatus`: QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELING, CANCELED).
"""

from __future__ import annotations

import dataclasses
import math
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


#: How deep a run config may nest: a bound on the check's recursion (JSON itself has none).
MAX_CONFIG_DEPTH = 100


class BadRunInput(ValueError):
    """A run config or tags that are not plain JSON: one line naming where and what."""


def check_run_input(run_config: Any, tags: Any) -> None:
    """Refuse (BadRunInput) a run config that is not a JSON object of plain JSON values
    (null, true/false, a finite number, a string, a list, an object with string keys), or
    tags that are not an object of strings to strings. NaN and Infinity are not JSON
    (RFC 8259 section 6) and `allow_nan=False` encoders, browsers' `JSON.parse` included,
    refuse them; 1e400 parses to Infinity. Every entry (CLI, API, control socket, a
    sensor's or schedule's RunRequest) calls this before a run is stored."""
    if not isinstance(run_config, dict):
        raise BadRunInput(f"run_config must be a JSON object, got {json_kind(run_config)}")
    _check_value(run_config, "run_config", 0)
    if not isinstance(tags, dict):
        raise BadRunInput(f"tags must be an object of strings, got {json_kind(tags)}")
    for key, value in tags.items():
        if not isinstance(key, str):
            raise BadRunInput(f"tags: a key must be a string, got {json_kind(key)} {key!r}")
        if not isinstance(value, str):
            raise BadRunInput(f"tags.{key}: a tag's value must be a string, got {json_kind(value)}")
        _check_text(key, "tags: a key")
        _check_text(value, f"tags.{key}")


def _check_value(value: Any, where: str, depth: int) -> None:
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        _check_text(value, where)
        return
    if isinstance(value, float):
        if value != value:
            raise BadRunInput(f"{where}: NaN is not a JSON number")
        if not math.isfinite(value):
            sign = "-" if value < 0 else ""
            raise BadRunInput(
                f"{where}: {sign}Infinity is not a JSON number (a number too large for a "
                "float, such as 1e400, reads as Infinity)"
            )
        return
    if depth >= MAX_CONFIG_DEPTH:
        raise BadRunInput(f"{where}: nested more than {MAX_CONFIG_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BadRunInput(f"{where}: a key must be a string, got {json_kind(key)} {key!r}")
            _check_text(key, f"{where}: a key")
            _check_value(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]", depth + 1)
    else:
        raise BadRunInput(f"{where}: {json_kind(value)} is not a JSON value")


def finite_json(value: Any, _depth: int = 0) -> Any:
    """`value` with each non-finite float as the string "NaN", "Infinity" or "-Infinity",
    so that strict JSON (`allow_nan=False`) can encode a record stored before such input
    was refused; dicts, lists and tuples are copied, everything else is itself."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if _depth > 2 * MAX_CONFIG_DEPTH:  # deeper than any record holds
        return str(value)
    if isinstance(value, dict):
        return {k: finite_json(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v, _depth + 1) for v in value]
    return value


def _check_text(text: str, where: str) -> None:
    """A string JSON can carry but UTF-8 cannot: a lone surrogate (`"\\ud800"` in JSON, or
    bytes that were not UTF-8 on a command line). The storage and every reader need UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRunInput(
            f"{where}: holds U+{ord(text[exc.start]):04X}, a lone surrogate, not text"
        ) from None


def json_kind(value: Any) -> str:
    """A value's JSON kind in words, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__

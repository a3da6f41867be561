"""Schedules and sensors as the daemon sees them: read from a location's snapshot, their
RUNNING/STOPPED state decided, their run requests turned into QUEUED run records.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from workspace_manager.runs.queue import check_tags
from workspace_manager.storage.records import (
    QUEUED,
    RUNNING,
    SCHEDULE,
    SENSOR,
    STOPPED,
    RunRecord,
    check_run_input,
)

#: A sensor's interval when its code sets none (SPEC section 7, as Dagster's).
DEFAULT_SENSOR_INTERVAL = 30.0
STANDARD = "standard"
RUN_STATUS = "run_status"


@dataclass(frozen=True, eq=False)  # by identity: job tags may hold lists (unhashable)
class Instigator:
    """One schedule or sensor of one repository of one location, from its snapshot."""

    location: str
    repository: Optional[str]
    kind: str  # SCHEDULE | SENSOR
    name: str
    job_name: Optional[str] = None
    default_status: Optional[str] = None  # the code's: RUNNING | STOPPED | None
    description: Optional[str] = None
    # schedules
    cron_schedule: Optional[str] = None
    execution_timezone: Optional[str] = None
    # sensors
    minimum_interval_seconds: float = DEFAULT_SENSOR_INTERVAL
    sensor_type: str = STANDARD  # "standard" | "run_status"
    run_status: Optional[str] = None  # a run status sensor's status (DagsterRunStatus)
    watches_other_locations: bool = False  # monitored_jobs or monitor_all_code_locations
    # the jobs' own tags (a run gets them, under the request's), by job name
    job_tags: Tuple[Tuple[str, Tuple[Tuple[str, Any], ...]], ...] = ()

    @property
    def key(self) -> Tuple[str, str, str]:
        """What the storage keeps its state under: (location, name, kind)."""
        return (self.location, self.name, self.kind)

    @property
    def task_key(self) -> Tuple[str, Optional[str], str, str]:
        return (self.location, self.repository, self.kind, self.name)

    def tags_of(self, job: str) -> Dict[str, Any]:
        for name, tags in self.job_tags:
            if name == job:
                return dict(tags)
        return {}


def instigators_of(location: str, snapshot: Mapping[str, Any]) -> List[Instigator]:
    """Every schedule and sensor of a location's snapshot (docs/protocol.md, get_snapshot)."""
    out: List[Instigator] = []
    for repo in snapshot.get("repositories") or []:
        repository = repo.get("name")
        job_tags = tuple(
            (str(job.get("name")), tuple(sorted((job.get("tags") or {}).items())))
            for job in repo.get("jobs") or []
        )
        for item in repo.get("schedules") or []:
            out.append(
                Instigator(
                    location=location,
                    repository=repository,
                    kind=SCHEDULE,
                    name=str(item["name"]),
                    job_name=item.get("job_name"),
                    default_status=_status(item.get("default_status")),
                    description=item.get("description"),
                    cron_schedule=str(item.get("cron_schedule")),
                    execution_timezone=item.get("execution_timezone") or None,
                    job_tags=job_tags,
                )
            )
        for item in repo.get("sensors") or []:
            interval = item.get("minimum_interval_seconds")
            out.append(
                Instigator(
                    location=location,
                    repository=repository,
                    kind=SENSOR,
                    name=str(item["name"]),
                    job_name=item.get("job_name"),
                    default_status=_status(item.get("default_status")),
                    description=item.get("description"),
                    minimum_interval_seconds=float(interval)
                    if isinstance(interval, (int, float)) and interval > 0
                    else DEFAULT_SENSOR_INTERVAL,
                    sensor_type=item.get("sensor_type") or STANDARD,
                    run_status=_status(item.get("run_status")),
                    watches_other_locations=bool(
                        item.get("monitored_jobs") or item.get("monitor_all_code_locations")
                    ),
                    job_tags=job_tags,
                )
            )
    return out


def resolve_status(
    stored: Optional[str], code: Optional[str], workspace: Optional[str]
) -> Tuple[str, str]:
    """(RUNNING | STOPPED, where it comes from): the user's choice kept in the storage
    ("user"), else the code's `default_status` ("code"), else the workspace's
    `daemon.default_status` ("workspace"), else STOPPED ("default"). SPEC section 7, as
    Dagster's DefaultScheduleStatus / DefaultSensorStatus."""
    for value, source in ((stored, "user"), (code, "code"), (workspace, "workspace")):
        status = _status(value)
        if status in (RUNNING, STOPPED):
            return status, source
    return STOPPED, "default"


def runs_from_requests(
    inst: Instigator,
    requests: List[Mapping[str, Any]],
    origin: Mapping[str, Any],
    now: float,
) -> List[RunRecord]:
    """QUEUED runs for a tick's run requests (docs/protocol.md: run_key, run_config, tags,
    job_name). The tick's id is filled into `origin` by the storage (record_tick).
    Raises ValueError (one line) for a request the manager cannot queue: the caller fails
    the whole tick and queues none of its requests (a tick's runs are one decision, as a
    bad priority already was; a half-done tick would hide the error behind the runs that
    went). Its run_config and tags must be plain JSON (`check_run_input`): a request's
    tags are the user's own and must be strings; a job's own tags may be any JSON value
    (SPEC section 1) and become text."""
    runs = []
    for number, request in enumerate(requests, 1):
        job = request.get("job_name") or inst.job_name
        if not isinstance(job, str):
            raise ValueError(f"{inst.kind} {inst.name!r} requested a run without a job")
        run_config = request.get("run_config")
        request_tags = request.get("tags")
        try:
            check_run_input(
                {} if run_config is None else run_config,
                {} if request_tags is None else request_tags,
            )
            tags = {str(k): _tag_text(v) for k, v in inst.tags_of(job).items()}
            tags.update(request_tags or {})
            priority = check_tags(tags)
        except ValueError as exc:
            raise ValueError(f"run request {number} of {len(requests)}: {exc}") from None
        run_key = request.get("run_key")
        run_origin = {"kind": inst.kind, "name": inst.name, **origin}
        if inst.kind == SENSOR:
            run_origin["run_key"] = run_key
        runs.append(
            RunRecord(
                run_id=uuid.uuid4().hex,
                location=inst.location,
                job=job,
                status=QUEUED,
                repository=inst.repository,
                run_config=dict(run_config or {}),
                tags=tags,
                origin=run_origin,
                run_key=None if run_key is None else str(run_key),
                priority=priority,
                created_at=now,
            )
        )
    return runs


def _status(value: Any) -> Optional[str]:
    if value is None:
        return None
    return str(getattr(value, "value", value)).upper()


def _tag_text(value: Any) -> str:
    """Run tags are str -> str; a job tag may be any JSON value (SPEC section 1)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

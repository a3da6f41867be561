"""Plain-dict views of a repository, in the shapes docs/protocol.md promises."""

from __future__ import annotations

from enum import Enum

from .repository import RepositoryDefinition
from .run_status_sensor import RunStatusSensorDefinition
from .schedule import ScheduleDefinition
from .sensor import SensorDefinition

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Dict, Optional


def repository_snapshot(repo: RepositoryDefinition) -> Dict[str, Any]:
    """One item of get_snapshot's "repositories" list."""
    return {
        "name": repo.name,
        "description": repo.description,
        "jobs": [
            {"name": job.name, "description": job.description, "tags": dict(job.tags)}
            for job in repo.jobs
        ],
        "schedules": [schedule_snapshot(schedule) for schedule in repo.schedules],
        "sensors": [sensor_snapshot(sensor) for sensor in repo.sensors],
    }


def schedule_snapshot(schedule: ScheduleDefinition) -> Dict[str, Any]:
    return {
        "name": schedule.name,
        "job_name": schedule.job_name,
        "cron_schedule": schedule.cron_schedule,
        "execution_timezone": schedule.execution_timezone,
        "description": schedule.description,
        "default_status": _value(schedule.default_status),
        "tags": dict(schedule.tags),
    }


def sensor_snapshot(sensor: SensorDefinition) -> Dict[str, Any]:
    """`job_name` is None for a sensor of several jobs (and a run status sensor without
    request_job); `job_names` lists them all. `run_status`, `monitored_jobs` (None: every
    job of the location) and `monitor_all_code_locations` matter for run status sensors."""
    snapshot = {
        "name": sensor.name,
        "job_name": sensor.job_name,
        "minimum_interval_seconds": sensor.minimum_interval_seconds,
        "description": sensor.description,
        "default_status": _value(sensor.default_status),
        "sensor_type": sensor.sensor_type,
        "job_names": list(sensor.job_names),
        "run_status": None,
        "monitored_jobs": None,
        "monitor_all_code_locations": False,
    }
    if isinstance(sensor, RunStatusSensorDefinition):
        snapshot["run_status"] = sensor.run_status.value
        if sensor.monitored_jobs is not None:
            snapshot["monitored_jobs"] = list(sensor.monitored_jobs)
        snapshot["monitor_all_code_locations"] = sensor.monitor_all_code_locations
    return snapshot


def _value(member: Optional[Enum]) -> Optional[str]:
    return member.value if member is not None else None


def repository_summary(repo: RepositoryDefinition) -> Dict[str, Any]:
    """One item of list_repositories' answer: names only."""
    return {
        "name": repo.name,
        "jobs": [job.name for job in repo.jobs],
        "schedules": [schedule.name for schedule in repo.schedules],
        "sensors": [sensor.name for sensor in repo.sensors],
    }

"""Plain-dict views of a repository, in the shapes docs/protocol.md promises."""

from __future__ import annotations

from typing import Any, Dict

from .repository import RepositoryDefinition


def repository_snapshot(repo: RepositoryDefinition) -> Dict[str, Any]:
    """One item of get_snapshot's "repositories" list."""
    return {
        "name": repo.name,
        "description": repo.description,
        "jobs": [
            {"name": job.name, "description": job.description, "tags": dict(job.tags)}
            for job in repo.jobs
        ],
        "schedules": [
            {
                "name": schedule.name,
                "job_name": schedule.job_name,
                "cron_schedule": schedule.cron_schedule,
                "execution_timezone": schedule.execution_timezone,
                "description": schedule.description,
            }
            for schedule in repo.schedules
        ],
        "sensors": [
            {
                "name": sensor.name,
                "job_name": sensor.job_name,
                "minimum_interval_seconds": sensor.minimum_interval_seconds,
                "description": sensor.description,
            }
            for sensor in repo.sensors
        ],
    }


def repository_summary(repo: RepositoryDefinition) -> Dict[str, Any]:
    """One item of list_repositories' answer: names only."""
    return {
        "name": repo.name,
        "jobs": [job.name for job in repo.jobs],
        "schedules": [schedule.name for schedule in repo.schedules],
        "sensors": [sensor.name for sensor in repo.sensors],
    }

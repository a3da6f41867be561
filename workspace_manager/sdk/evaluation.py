"""Run user code on request and return the plain dicts of docs/protocol.md.

Exceptions raised by user code propagate unchanged (the loader turns them into
UserCodeError with the traceback); NotFoundError and DefinitionError are the SDK's.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterable, List, Mapping, Optional

from .context import SensorContext
from .errors import DefinitionError, NotFoundError
from .repository import RepositoryDefinition
from .run_requests import RunRequest
from .values import plain_config, plain_or_repr


def evaluate_sensor(
    repo: RepositoryDefinition,
    sensor_name: str,
    cursor: Optional[str] = None,
    last_run_key: Optional[str] = None,
) -> Dict[str, Any]:
    """One sensor tick: {"run_requests", "skip_reason", "cursor"}."""
    sensor = repo.get_sensor(sensor_name)
    context = SensorContext(sensor.name, cursor, last_run_key, repo.name)
    requests, skip = sensor.evaluate(context)
    return {
        "run_requests": _request_dicts(repo, requests, sensor.job_name, f"sensor {sensor.name!r}"),
        "skip_reason": skip.skip_message if skip is not None else None,
        "cursor": context.cursor,
    }


def evaluate_schedule(
    repo: RepositoryDefinition, schedule_name: str, scheduled_time: Optional[float] = None
) -> Dict[str, Any]:
    """One schedule tick at `scheduled_time` (Unix seconds, default now)."""
    schedule = repo.get_schedule(schedule_name)
    when = time.time() if scheduled_time is None else float(scheduled_time)
    requests, skip = schedule.evaluate(schedule.context_for(when, repo.name))
    owner = f"schedule {schedule.name!r}"
    return {
        "run_requests": _request_dicts(repo, requests, schedule.job_name, owner, schedule.tags),
        "skip_reason": skip.skip_message if skip is not None else None,
    }


def execute_job(
    repo: RepositoryDefinition, job_name: str, run_config: Optional[Mapping[str, Any]] = None
) -> Dict[str, Any]:
    """Run a job once: {"success": True, "result": its return value, or its repr}."""
    job = repo.get_job(job_name)
    config = plain_config(run_config, f"job {job.name!r}")
    return {"success": True, "result": plain_or_repr(job.execute(config))}


def select_repository(
    repositories: Iterable[RepositoryDefinition],
    repository: Optional[str] = None,
    *,
    kind: Optional[str] = None,
    name: Optional[str] = None,
) -> RepositoryDefinition:
    """The repository a call means: the one named, or the only one having `kind` `name`.

    `kind` is "job", "schedule" or "sensor". Without `repository`, a location with a
    single repository needs no name; otherwise the definition must exist in exactly one.
    """
    repos = list(repositories)
    if repository is not None:
        for repo in repos:
            if repo.name == repository:
                return repo
        known = ", ".join(r.name for r in repos) or "none"
        raise NotFoundError(f"no repository named {repository!r} (known: {known})")
    if kind is None or name is None:
        if len(repos) == 1:
            return repos[0]
        raise NotFoundError(f"{len(repos)} repositories here; name one")
    having = [repo for repo in repos if getattr(repo, f"has_{kind}")(name)]
    if len(having) == 1:
        return having[0]
    if not having:
        if len(repos) == 1:
            return repos[0]  # its get_* names what the repository does have
        raise NotFoundError(f"no repository here has a {kind} named {name!r}")
    names = ", ".join(repo.name for repo in having)
    raise NotFoundError(f"{kind} {name!r} exists in several repositories ({names}); name one")


def _request_dicts(
    repo: RepositoryDefinition,
    requests: List[RunRequest],
    default_job: str,
    owner: str,
    base_tags: Optional[Mapping[str, str]] = None,
) -> List[Dict[str, Any]]:
    out = []
    for request in requests:
        item = request.to_dict(default_job, base_tags)
        if not repo.has_job(item["job_name"]):
            raise DefinitionError(
                f"{owner} requested a run of job {item['job_name']!r}, "
                f"which is not in repository {repo.name!r}"
            )
        out.append(item)
    return out

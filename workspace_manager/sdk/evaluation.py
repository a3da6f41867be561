"""Run user code on request and return the plain dicts of docs/protocol.md.

Exceptions raised by user code propagate unchanged (the loader turns them into
UserCodeError with the traceback); NotFoundError and DefinitionError are the SDK's.
"""

from __future__ import annotations

import time

from .context import SensorContext
from .errors import DefinitionError, NotFoundError
from .repository import RepositoryDefinition
from .run_requests import RunRequest
from .run_status_context import DagsterRun, run_from_dict
from .run_status_sensor import RunStatusSensorDefinition
from .values import plain_config, plain_or_repr

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

    #: Turns an exception raised for one run into the error recorded for it.
    ErrorMap = Callable[[BaseException], Dict[str, Any]]


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
        "run_requests": _request_dicts(
            repo, requests, sensor.job_name, f"sensor {sensor.name!r}", targets=sensor.job_names
        ),
        "skip_reason": skip.skip_message if skip is not None else None,
        "cursor": context.cursor,
    }


def evaluate_run_status_sensor(
    repo: RepositoryDefinition,
    sensor_name: str,
    runs: Sequence[Union[DagsterRun, Mapping[str, Any]]],
    location: Optional[str] = None,
    error_map: Optional[ErrorMap] = None,
) -> Dict[str, Any]:
    """Deliver each run (DagsterRuns or the protocol's run maps, in order) to a run status
    sensor once.

    A run whose status or job the sensor does not watch is not delivered, only reported
    (`delivered: False`, with the reason). An exception for one run is recorded as that
    run's `error` (through `error_map`), its run requests are dropped, and the other runs
    go on. Returns {"run_requests", "skip_reason", "results": [{"run_id", "delivered",
    "skip_reason", "error"}]}; `skip_reason` joins the runs' skip reasons when no run was
    requested. `location` is the sensor's own code location (for the default monitoring).
    """
    sensor = repo.get_sensor(sensor_name)
    if not isinstance(sensor, RunStatusSensorDefinition):
        raise DefinitionError(
            f"sensor {sensor.name!r} is not a run status sensor; call evaluate_sensor"
        )
    owner = f"sensor {sensor.name!r}"
    to_error = error_map or _plain_error
    requests_out: List[Dict[str, Any]] = []
    skips: List[str] = []
    results: List[Dict[str, Any]] = []
    for data in runs:
        run = data if isinstance(data, DagsterRun) else run_from_dict(data)
        result: Dict[str, Any] = {
            "run_id": run.run_id,
            "delivered": False,
            "skip_reason": sensor.skips(run, location),
            "error": None,
        }
        results.append(result)
        if result["skip_reason"] is not None:
            continue
        result["delivered"] = True
        try:
            requests, skip = sensor.evaluate_run(run, repo.name)
            dicts = _request_dicts(repo, requests, sensor.job_name, owner, targets=sensor.job_names)
        except BaseException as exc:  # as the loader does for a whole call: SystemExit too
            result["error"] = to_error(exc)
            continue
        requests_out.extend(dicts)
        if skip is not None and skip.skip_message:
            result["skip_reason"] = skip.skip_message
            if skip.skip_message not in skips:
                skips.append(skip.skip_message)
    return {
        "run_requests": requests_out,
        "skip_reason": "; ".join(skips) if skips and not requests_out else None,
        "results": results,
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


def _plain_error(exc: BaseException) -> Dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc), "traceback": None}


def _request_dicts(
    repo: RepositoryDefinition,
    requests: List[RunRequest],
    default_job: Optional[str],
    owner: str,
    base_tags: Optional[Mapping[str, str]] = None,
    targets: Optional[Sequence[str]] = None,
) -> List[Dict[str, Any]]:
    """The requests' protocol dicts. With no `default_job` (a sensor of several jobs, or a
    run status sensor without request_job) each request must name one of `targets`."""
    out = []
    for request in requests:
        if default_job is None:
            if not targets:
                raise DefinitionError(
                    f"{owner} returned a RunRequest but targets no job; give it request_job=my_job"
                )
            if request.job_name is None:
                raise DefinitionError(
                    f"{owner} targets several jobs ({', '.join(targets)}); each RunRequest "
                    "must name one: RunRequest(job_name=...)"
                )
            if request.job_name not in targets:
                raise DefinitionError(
                    f"{owner} requested a run of job {request.job_name!r}, which it does "
                    f"not target (it targets {', '.join(targets)})"
                )
        item = request.to_dict(default_job, base_tags)
        if not repo.has_job(item["job_name"]):
            raise DefinitionError(
                f"{owner} requested a run of job {item['job_name']!r}, "
                f"which is not in repository {repo.name!r}"
            )
        out.append(item)
    return out

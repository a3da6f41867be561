"""The protocol's methods over a loaded location: parameter checks, SDK calls, error mapping.

Cheap methods (ping, list_repositories, get_snapshot) answer from data computed once at
load time, since definitions never change after load. User-code methods (evaluate_sensor,
evaluate_run_status_sensor, evaluate_schedule, execute_job) run repository code; the server
runs them in worker threads.
"""

from __future__ import annotations

import os
import sys

from ..protocol import errors as E
from ..protocol.messages import error_from_exception, error_map
from ..sdk.errors import DefinitionError, NotFoundError
from ..sdk.evaluation import (
    evaluate_run_status_sensor,
    evaluate_schedule,
    evaluate_sensor,
    execute_job,
    select_repository,
)
from ..sdk.repository import RepositoryDefinition
from ..sdk.run_status_context import DagsterRun, run_from_dict
from ..sdk.snapshot import repository_snapshot, repository_summary
from ..sdk.status import DagsterRunStatus

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

_NUMBER = (int, float)


class CallError(Exception):
    """A call refused before any user code ran (bad params, unknown names)."""

    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type
        self.message = message


def check_params(params: Dict[str, Any], spec: Dict[str, Tuple[Any, bool]]) -> Dict[str, Any]:
    """`spec`: name -> (allowed types (None allowed via type(None)), required)."""
    for key in params:
        if key not in spec:
            raise CallError(E.INVALID_PARAMS, f"unknown parameter {key!r}")
    for key, (types, required) in spec.items():
        if key not in params:
            if required:
                raise CallError(E.INVALID_PARAMS, f"parameter {key!r} is required")
            continue
        value = params[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
            raise CallError(
                E.INVALID_PARAMS, f"parameter {key!r} has the wrong type ({type(value).__name__})"
            )
    return params


def _tuple(types: Any) -> tuple:
    return types if isinstance(types, tuple) else (types,)


_OPT_STR = (str, type(None))
_NOTHING: Dict[str, Tuple[Any, bool]] = {}


class Methods:
    """Everything a connection can ask of this location."""

    def __init__(self, location: str, repositories: List[RepositoryDefinition]) -> None:
        self.location = location
        self.repositories = repositories
        self.pid = os.getpid()
        self.repository_snapshots = [repository_snapshot(repo) for repo in repositories]
        self.snapshot = {
            "location": location,
            "python": sys.version,
            "python_version": ".".join(str(part) for part in sys.version_info[:3]),
            "executable": sys.executable,
            "pid": self.pid,
            "repositories": self.repository_snapshots,
        }
        self.summaries = [repository_summary(repo) for repo in repositories]
        self._ping = {"pid": self.pid}
        self.inline: Dict[str, Callable[[Dict[str, Any]], Any]] = {
            "ping": self.ping,
            "list_repositories": self.list_repositories,
            "get_snapshot": self.get_snapshot,
        }
        self.user_code: Dict[str, Callable[[Dict[str, Any]], Any]] = {
            "evaluate_sensor": self.evaluate_sensor,
            "evaluate_run_status_sensor": self.evaluate_run_status_sensor,
            "evaluate_schedule": self.evaluate_schedule,
            "execute_job": self.execute_job,
        }

    @property
    def repository_names(self) -> List[str]:
        return [summary["name"] for summary in self.summaries]

    # ---------------------------------------------------------------- cheap

    def ping(self, params: Dict[str, Any]) -> Any:
        if params:
            check_params(params, _NOTHING)
        return self._ping

    def list_repositories(self, params: Dict[str, Any]) -> Any:
        if params:
            check_params(params, _NOTHING)
        return self.summaries

    def get_snapshot(self, params: Dict[str, Any]) -> Any:
        check_params(params, {"repository": (_OPT_STR, False)})
        name = params.get("repository")
        if name is None:
            return self.snapshot
        for snap in self.repository_snapshots:
            if snap["name"] == name:
                return dict(self.snapshot, repositories=[snap])
        raise NotFoundError(
            f"no repository named {name!r} (known: {', '.join(self.repository_names)})"
        )

    # ---------------------------------------------------------------- user code

    def evaluate_sensor(self, params: Dict[str, Any]) -> Any:
        check_params(
            params,
            {
                "sensor": (str, True),
                "repository": (_OPT_STR, False),
                "cursor": (_OPT_STR, False),
                "last_run_key": (_OPT_STR, False),
            },
        )
        name = params["sensor"]
        repo = self._select(params, "sensor", name)
        return evaluate_sensor(repo, name, params.get("cursor"), params.get("last_run_key"))

    def evaluate_run_status_sensor(self, params: Dict[str, Any]) -> Any:
        check_params(
            params,
            {
                "sensor": (str, True),
                "repository": (_OPT_STR, False),
                "runs": (list, True),
                "location": (_OPT_STR, False),
            },
        )
        runs = [check_run(run, index) for index, run in enumerate(params["runs"])]
        name = params["sensor"]
        repo = self._select(params, "sensor", name)
        # the caller's name for this location wins: a remote server may call itself otherwise
        location = params.get("location") or self.location
        return evaluate_run_status_sensor(
            repo, name, runs, location, lambda exc: error_for(exc, user_code=True)
        )

    def evaluate_schedule(self, params: Dict[str, Any]) -> Any:
        check_params(
            params,
            {
                "schedule": (str, True),
                "repository": (_OPT_STR, False),
                "scheduled_time": (_NUMBER + (type(None),), False),
            },
        )
        name = params["schedule"]
        repo = self._select(params, "schedule", name)
        return evaluate_schedule(repo, name, params.get("scheduled_time"))

    def execute_job(self, params: Dict[str, Any]) -> Any:
        check_params(
            params,
            {
                "job": (str, True),
                "repository": (_OPT_STR, False),
                "run_config": ((dict, type(None)), False),
            },
        )
        name = params["job"]
        repo = self._select(params, "job", name)
        return execute_job(repo, name, params.get("run_config"))

    @staticmethod
    def error(exc: BaseException, user_code: bool) -> Dict[str, Any]:
        return error_for(exc, user_code)

    def _select(self, params: Dict[str, Any], kind: str, name: str) -> RepositoryDefinition:
        return select_repository(self.repositories, params.get("repository"), kind=kind, name=name)


_RUN_FIELDS: Dict[str, Tuple[Any, bool]] = {
    "run_id": (str, True),
    "job_name": (str, True),
    "status": (str, True),
    "tags": ((dict, type(None)), False),
    "run_config": ((dict, type(None)), False),
    "location": (_OPT_STR, False),
    "repository": (_OPT_STR, False),
    "error": ((str, dict, type(None)), False),
}
_RUN_STATUSES = frozenset(status.value for status in DagsterRunStatus)


def check_run(run: object, index: int) -> DagsterRun:
    """One run map of evaluate_run_status_sensor's `runs`, as a DagsterRun (InvalidParams).

    `job` is taken for `job_name` (a run record's own key); other keys are ignored, so a
    caller may pass its run records as they are. Tags must be str -> str.
    """
    where = f"runs[{index}]"
    if not isinstance(run, dict):
        raise CallError(E.INVALID_PARAMS, f"{where} must be a map, got {type(run).__name__}")
    if "job_name" not in run and "job" in run:
        run = dict(run, job_name=run["job"])
    known = {key: run[key] for key in _RUN_FIELDS if key in run}
    try:
        check_params(known, _RUN_FIELDS)
    except CallError as exc:
        raise CallError(exc.type, f"{where}: {exc.message}") from None
    if known["status"] not in _RUN_STATUSES:
        raise CallError(
            E.INVALID_PARAMS,
            f"{where}: status {known['status']!r} is not one of {', '.join(sorted(_RUN_STATUSES))}",
        )
    tags = known.get("tags") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise CallError(E.INVALID_PARAMS, f"{where}: tags must map str to str")
    try:
        return run_from_dict(known)
    except DefinitionError as exc:
        raise CallError(E.INVALID_PARAMS, f"{where}: {exc}") from None


def error_for(exc: BaseException, user_code: bool) -> Dict[str, Any]:
    """The error map a failed call answers with."""
    if isinstance(exc, CallError):
        return error_map(exc.type, exc.message)
    if isinstance(exc, NotFoundError):
        return error_map(E.NOT_FOUND, str(exc))
    if isinstance(exc, DefinitionError):
        return error_from_exception(exc, E.DEFINITION_ERROR, PLUMBING)
    if not user_code:
        return error_from_exception(exc, E.INTERNAL_ERROR)
    return error_from_exception(exc, E.USER_CODE_ERROR, PLUMBING)


def load_error(exc: BaseException, dropped_pythonpath: Optional[str] = None) -> Dict[str, Any]:
    """The error map of a `load_error` notification.

    A missing module while the manager had a PYTHONPATH that the location does not get
    (`dropped_pythonpath`) is most likely that: the message says so.
    """
    kind = E.DEFINITION_ERROR if isinstance(exc, DefinitionError) else E.USER_CODE_ERROR
    error = error_from_exception(exc, kind, PLUMBING)
    hint = pythonpath_hint(exc, dropped_pythonpath)
    if hint:
        error["message"] = f"{error['message']} {hint}"
    return error


def pythonpath_hint(exc: BaseException, dropped_pythonpath: Optional[str]) -> str:
    """ "(wsm does not pass the shell's PYTHONPATH=... ...)" when `exc` is, or was caused by, a
    missing module and the manager had a PYTHONPATH; else ""."""
    if not dropped_pythonpath or not _missing_module(exc):
        return ""
    return (
        f"(wsm does not pass the shell's PYTHONPATH={dropped_pythonpath} to locations; "
        "set it in the location's env_vars)"
    )


def _missing_module(exc: BaseException) -> bool:
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ModuleNotFoundError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


#: Frames a user's traceback starts after: the loader's own and importlib's.
PLUMBING = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sdk") + os.sep,
    "<frozen importlib",
)

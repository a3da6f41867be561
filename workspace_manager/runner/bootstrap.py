"""A run process's bootstrap: one JSON line on stdin (docs/daemon.md), checked strictly.

A bad bootstrap is a wsm bug, not a repository problem: the run exits with status 3.
"""

from __future__ import annotations

from collections import namedtuple

from ..loader.bootstrap import BootstrapError, _get, _parse_target, json_object
from ..version import PROTOCOL_VERSION

# typing is for type checkers only: a NamedTuple is a collections.namedtuple at run time
# (docs/architecture.md, "What a location imports").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, NamedTuple, Optional

    from ..loader.bootstrap import Target

__all__ = ["BootstrapError", "RunBootstrap", "parse_run_bootstrap"]


if TYPE_CHECKING:

    class RunBootstrap(NamedTuple):
        run_id: str
        location: str
        target: Target
        job: str
        repository: Optional[str] = None
        run_config: Dict[str, Any] = {}
        tags: Dict[str, str] = {}
        status_fd: Optional[int] = None
        cgroup: Optional[str] = None
        dropped_pythonpath: Optional[str] = None
        hold: bool = False  # load the job, send `loaded`, wait for `go` on stdin

else:
    RunBootstrap = namedtuple(
        "RunBootstrap",
        "run_id location target job repository run_config tags status_fd cgroup"
        " dropped_pythonpath hold",
        defaults=(None, {}, {}, None, None, None, False),
    )


def parse_run_bootstrap(line: bytes) -> RunBootstrap:
    """The bootstrap in `line`; raises BootstrapError naming what is wrong."""
    obj = json_object(line)
    protocol = _get(obj, "protocol", int, optional=True)
    if protocol is not None and protocol != PROTOCOL_VERSION:
        raise BootstrapError(
            f"protocol {protocol} is not supported (this runner speaks {PROTOCOL_VERSION})"
        )
    status_fd = _get(obj, "status_fd", int, optional=True)
    if status_fd is not None and status_fd < 0:
        raise BootstrapError("'status_fd' is negative")
    tags = _get(obj, "tags", dict, optional=True) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise BootstrapError("'tags' must map strings to strings")
    return RunBootstrap(
        run_id=_get(obj, "run_id", str),
        location=_get(obj, "location", str),
        target=_parse_target(_get(obj, "target", dict)),
        job=_get(obj, "job", str),
        repository=_get(obj, "repository", str, optional=True),
        run_config=_get(obj, "run_config", dict, optional=True) or {},
        tags=tags,
        status_fd=status_fd,
        cgroup=_get(obj, "cgroup", str, optional=True),
        dropped_pythonpath=_get(obj, "dropped_pythonpath", str, optional=True) or None,
        hold=_flag(obj, "hold"),
    )


def _flag(obj: Dict[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise BootstrapError(f"{key!r} has the wrong type ({type(value).__name__})")
    return value

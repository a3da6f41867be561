"""From a LocationConfig to a LaunchPlan: interpreter, argv, cwd, environment, bootstrap."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from workspace_manager.envs.activation import activation_vars
from workspace_manager.loader.launch import bootstrap_argv
from workspace_manager.protocol.limits import DEFAULT_MAX_FRAME
from workspace_manager.version import PROTOCOL_VERSION
from workspace_manager.workspace.model import CodeTarget, LocationConfig

if TYPE_CHECKING:  # kept out of `wsm job execute`'s path to its run's spawn
    import ssl

    from workspace_manager.supervisor.cgroup import CgroupRoot
    from workspace_manager.supervisor.forkserver import ForkServers
    from workspace_manager.supervisor.heartbeats import HeartbeatFile

#: A single line of output longer than this is cut (binary garbage has no newlines).
MAX_LINE = 8192


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start a location's loader; built once per (re)start."""

    argv: tuple
    cwd: str
    env: Dict[str, str]
    bootstrap: Dict[str, Any]  # without secret, listen and status_fd: the instance adds those
    socket_path: Path
    max_frame: int = DEFAULT_MAX_FRAME
    # `wsm serve`: listen here (unix:/tcp://) with this secret (the shared token) and TLS,
    # instead of a private socket with a fresh per-process secret.
    listen: Optional[str] = None
    secret: Optional[str] = None
    connect: Optional[str] = None  # where the manager reaches it, when not `listen`
    tls: Optional[Dict[str, str]] = None  # {"cert": path, "key": path}
    client_ssl: Optional[ssl.SSLContext] = None
    # Where each process of this location gets a cgroup of its own; None: the tree must do.
    cgroups: Optional[CgroupRoot] = None
    # Fork servers to fork the loader from instead of spawning it, where one can.
    forks: Optional[ForkServers] = None
    # The manager's heartbeat file (supervisor/heartbeats.py): the loader counts in a page of
    # it; None: it is pinged every `heartbeat_seconds`.
    heartbeats: Optional[HeartbeatFile] = None
    heartbeat_seconds: float = 2.0


#: Variables of wsm's own environment that would leak wsm's packages into another interpreter.
SCRUBBED_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONEXECUTABLE")


def child_environment(location: LocationConfig, interpreter: str) -> Dict[str, str]:
    env = _scrubbed_environ()
    env.update(location.env_vars)
    env.update(_activation(interpreter, env.get("PATH")))  # its own bin/ first on PATH
    env["WSM_LOCATION"] = location.name
    env.setdefault("PYTHONUNBUFFERED", "1")  # so its prints reach the log as they happen
    return env


_environ_seen: Tuple[Optional[Dict[bytes, bytes]], Dict[str, str]] = (None, {})


def _scrubbed_environ() -> Dict[str, str]:
    """wsm's environment without `SCRUBBED_VARS`, as a new dict. Decoding `os.environ`
    item by item cost ~0.3 ms a location (1,000 locations: 0.3 s of the loop); the decoded
    copy is reused while the raw environment (`os.environ._data`, bytes on POSIX) compares
    equal to the one it was made from, so a change made since is seen at once."""
    global _environ_seen
    raw = getattr(os.environ, "_data", None)
    seen, scrubbed = _environ_seen
    if raw is None or seen != raw:
        scrubbed = {k: v for k, v in os.environ.items() if k not in SCRUBBED_VARS}
        _environ_seen = (dict(raw) if raw is not None else None, scrubbed)
    return dict(scrubbed)


@functools.lru_cache(maxsize=256)
def _activation(interpreter: str, path: Optional[str]) -> Tuple[Tuple[str, str], ...]:
    """`activation_vars`, once per interpreter and PATH: its file checks (pyvenv.cfg,
    conda-meta) ran on the loop at each of 100 starts, with the same answer each time."""
    return tuple(activation_vars(interpreter, path).items())


def target_dict(target: CodeTarget) -> dict:
    return {
        "kind": target.kind,
        "python_file": str(target.python_file) if target.python_file else None,
        "module_name": target.module_name,
        "attribute": target.attribute,
        "working_directory": str(target.working_directory),
    }


def launch_plan(
    location: LocationConfig,
    interpreter: str,
    sdk_dir: str,
    socket_path: Path,
    max_frame: Optional[int] = None,
) -> LaunchPlan:
    """``max_frame``: the frame limit of both ends in bytes; default the location's
    `supervision.max_message_mb`."""
    target = location.target
    assert isinstance(target, CodeTarget)
    if max_frame is None:
        max_frame = location.supervision.max_frame_bytes
    bootstrap = {
        "location": location.name,
        "target": target_dict(target),
        "max_frame_bytes": max_frame,
        "tls": None,
        "protocol": PROTOCOL_VERSION,
        # named in a "No module named" load error: the location does not get it
        "dropped_pythonpath": None
        if "PYTHONPATH" in location.env_vars
        else os.environ.get("PYTHONPATH"),
    }
    return LaunchPlan(
        argv=tuple(bootstrap_argv(interpreter, sdk_dir)),
        cwd=str(target.working_directory),
        env=child_environment(location, interpreter),
        bootstrap=bootstrap,
        socket_path=socket_path,
        max_frame=max_frame,
    )

"""From a LocationConfig to a LaunchPlan: interpreter, argv, cwd, environment, bootstrap."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

from workspace_manager.envs.activation import activation_vars
from workspace_manager.loader.launch import bootstrap_argv
from workspace_manager.supervisor.instance import LaunchPlan
from workspace_manager.version import PROTOCOL_VERSION
from workspace_manager.workspace.model import CodeTarget, LocationConfig

#: Variables of wsm's own environment that would leak wsm's packages into another interpreter.
SCRUBBED_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONEXECUTABLE")


def child_environment(location: LocationConfig, interpreter: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_VARS}
    env.update(location.env_vars)
    env.update(activation_vars(interpreter, env.get("PATH")))  # its own bin/ first on PATH
    env["WSM_LOCATION"] = location.name
    env.setdefault("PYTHONUNBUFFERED", "1")  # so its prints reach the log as they happen
    return env


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

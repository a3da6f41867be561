"""What `wsm job execute` does before its event loop: find the location, plan its run as
the manager plans a location's runs, and start the run's process held, its bootstrap
written, so the process imports the location's code while the command goes on to import
asyncio, the coordinator and the storage (runs/execute.py). Nothing here imports asyncio.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from workspace_manager.loader.launch import make_sdk_dir
from workspace_manager.runs.ids import new_run_id
from workspace_manager.runs.plan import RunPlan, bootstrap_for, plan_from_launch, spawn_runner
from workspace_manager.supervisor import runtime
from workspace_manager.supervisor.cgroup import CgroupRoot
from workspace_manager.supervisor.plan import launch_plan
from workspace_manager.supervisor.secret_vars import without_secrets, wsm_secret_vars
from workspace_manager.supervisor.spawn import HeldSpawn
from workspace_manager.workspace.model import LocationConfig, RemoteTarget, Workspace


class ExecuteError(Exception):
    """The job cannot be executed (no such location, a remote one, its env fails, no such
    job): one line, and no run is recorded."""


@dataclass
class ExecuteStart:
    """A run of `job` planned, its process started and waiting for `go` (its bootstrap has
    `hold`). `close()` removes what was made for it, once the process is gone."""

    config: LocationConfig
    plan: RunPlan
    held: HeldSpawn
    run_id: str
    job: str
    run_config: Dict[str, Any]
    tags: Dict[str, str]
    folder: Path
    cgroups: Optional[CgroupRoot]

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_stale_folders(root: Path) -> List[Path]:
    """Remove the `execute-PID-*` folders under the runtime root `root` whose `wsm job
    execute` process is gone (one killed with `kill -9` cannot remove its own); returns
    them. A folder whose pid is alive (or not ours to see) is kept: a pid reused by
    another process only delays its removal."""
    removed: List[Path] = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        parts = name.split("-")
        if len(parts) != 3 or parts[0] != "execute" or not parts[1].isdigit():
            continue
        if int(parts[1]) == os.getpid() or _pid_running(int(parts[1])):
            continue
        shutil.rmtree(root / name, ignore_errors=True)
        removed.append(root / name)
    return removed


def _pid_running(pid: int) -> bool:
    """A process has `pid` and is not a zombie (/proc/PID/stat's state; no psutil here: it
    is not imported before the run's spawn)."""
    if not os.path.isdir("/proc/self"):  # no procfs: a zombie counts as running
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: keep its folder
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def find_location(workspace: Workspace, location: str) -> LocationConfig:
    """The location named `location`; ExecuteError naming the known ones, or saying it is
    remote (its code is not here)."""
    config = next((loc for loc in workspace.locations if loc.name == location), None)
    if config is None:
        names = ", ".join(loc.name for loc in workspace.locations)
        raise ExecuteError(f"no location named {location!r} (known: {names})")
    if isinstance(config.target, RemoteTarget):
        raise ExecuteError(
            f"location {config.name!r} is remote (grpc_server): its code is not here"
        )
    return config


def start_execute(
    workspace: Workspace,
    config: LocationConfig,
    python: str,
    job: str,
    run_config: Optional[Dict[str, Any]] = None,
    tags: Optional[Dict[str, str]] = None,
) -> ExecuteStart:
    """Plan the run under `python` (interpreter, working directory, env_vars, its env's
    `bin/` first on PATH, wsm's secrets removed: supervisor/plan.launch_plan) and start its
    process with its bootstrap (`hold`). ExecuteError when the interpreter cannot start."""
    root = runtime.ensure_private_dir(runtime.runtime_root())
    folder = root / f"execute-{os.getpid()}-{os.urandom(3).hex()}"  # no `secrets`: ~7 ms
    folder.mkdir(mode=0o700)
    cgroups = CgroupRoot.create()
    try:
        sdk_dir = make_sdk_dir(str(folder))
        launch = launch_plan(config, python, sdk_dir, folder / "unused.sock")
        env = without_secrets(launch.env, config, wsm_secret_vars(workspace))
        plan = plan_from_launch(dataclasses.replace(launch, env=env), sdk_dir, cgroups)
        run_id = new_run_id()
        tags = dict(tags or {})
        run_config = dict(run_config or {})
        held = spawn_runner(plan, name=f"run-{run_id[:12]}", run_id=run_id)
        boot = bootstrap_for(
            plan,
            run_id=run_id,
            location=config.name,
            job=job,
            repository=None,
            run_config=run_config,
            tags=tags,
        )
        held.write_bootstrap(dict(boot, hold=True), keep_stdin=True)
        # after the spawn: the run's process loads its code on the other core meanwhile
        remove_stale_folders(root)
    except OSError as exc:
        if cgroups is not None:
            cgroups.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise ExecuteError(f"cannot start {python}: {exc.strerror or exc}") from None
    except BaseException:
        if cgroups is not None:
            cgroups.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return ExecuteStart(config, plan, held, run_id, job, run_config, tags, folder, cgroups)

"""A location's run plan (where and how its runs start) and the start of a run's process
ahead of its bootstrap; no event loop needed, so `wsm job execute` starts the process before
it imports asyncio and the coordinator (runs/execute.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from workspace_manager.supervisor.cgroup import CgroupRoot
from workspace_manager.supervisor.spawn import HeldSpawn, start_held
from workspace_manager.version import PROTOCOL_VERSION

_CODE = (
    "import sys; sys.path.insert(0, {sdk_dir!r}); "
    "from workspace_manager.runner.main import main; main()"
)


@dataclass(frozen=True)
class RunPlan:
    """Where and how a location's runs start: the same interpreter, working directory,
    environment and code target as its loader (docs/daemon.md)."""

    python: str
    cwd: str
    env: Dict[str, str]
    sdk_dir: str
    target: Dict[str, Any]  # the loader's bootstrap target (supervisor/plan.target_dict)
    dropped_pythonpath: Optional[str] = None
    cgroups: Optional[CgroupRoot] = None

    @property
    def argv(self) -> List[str]:
        """`<python> -c "...runner main()"`; the bootstrap goes to stdin, never argv."""
        return [self.python, "-c", _CODE.format(sdk_dir=self.sdk_dir)]


def bootstrap_for(
    plan: RunPlan,
    *,
    run_id: str,
    location: str,
    job: str,
    repository: Optional[str],
    run_config: Dict[str, Any],
    tags: Dict[str, str],
) -> Dict[str, Any]:
    """The bootstrap line's content (status_fd and cgroup are added at spawn)."""
    return {
        "run_id": run_id,
        "location": location,
        "target": plan.target,
        "repository": repository,
        "job": job,
        "run_config": run_config,
        "tags": tags,
        "protocol": PROTOCOL_VERSION,
        "dropped_pythonpath": plan.dropped_pythonpath,
    }


def plan_from_launch(launch: Any, sdk_dir: str, cgroups: Optional[CgroupRoot]) -> RunPlan:
    """A location's RunPlan from its loader's LaunchPlan (supervisor/instance.py): the same
    interpreter (`argv[0]`), working directory, environment (env_vars, its env's `bin/`
    first on PATH, wsm's secrets removed) and code target."""
    return RunPlan(
        python=str(launch.argv[0]),
        cwd=str(launch.cwd),
        env=dict(launch.env),
        sdk_dir=sdk_dir,
        target=dict(launch.bootstrap["target"]),
        dropped_pythonpath=launch.bootstrap.get("dropped_pythonpath"),
        cgroups=cgroups,
    )


def spawn_runner(plan: RunPlan, *, name: str = "run", run_id: Optional[str] = None) -> HeldSpawn:
    """Start the plan's runner now, in a fresh cgroup `name`-N of the plan's root when there
    is one; it imports the SDK and waits for its bootstrap (RunProcess.start `held`). Its
    environment names the run (WSM_RUN_ID) when `run_id` is known. Raises OSError when the
    interpreter cannot be started."""
    env = dict(plan.env, WSM_RUN_ID=run_id) if run_id else dict(plan.env)
    return start_held(
        plan.argv, cwd=plan.cwd, env=env, cgroup=plan.cgroups.new(name) if plan.cgroups else None
    )

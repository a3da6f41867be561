"""The SPEC's seed example, verbatim, loaded in-process and under other interpreters.

The subprocess tests prove the SDK is stdlib-only and 3.9-compatible: the child
runs with -I -S (no site-packages at all) and sees wsm only through a symlink,
exactly as a location's loader does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

import workspace_manager
from workspace_manager.sdk.discovery import find_repositories
from workspace_manager.sdk.evaluation import evaluate_schedule, evaluate_sensor, execute_job
from workspace_manager.sdk.snapshot import repository_snapshot

SEED = """\
from workspace_manager import RunRequest, ScheduleDefinition, job, repository, sensor

@job
def job1(): ...

@job
def job2(): ...

@job
def job3(): ...

job1_schedule = ScheduleDefinition(job=job1, cron_schedule="0 0 * * *")

@sensor(job=job2)
def job2_sensor():
    should_run = True
    if should_run:
        yield RunRequest(run_key=None, run_config={})

@repository
def my_repository():
    return [job1, job1_schedule, job2_sensor, job3]
"""

EXPECTED_SNAPSHOT = {
    "name": "my_repository",
    "description": None,
    "jobs": [
        {"name": "job1", "description": None, "tags": {}},
        {"name": "job2", "description": None, "tags": {}},
        {"name": "job3", "description": None, "tags": {}},
    ],
    "schedules": [
        {
            "name": "job1_schedule",
            "job_name": "job1",
            "cron_schedule": "0 0 * * *",
            "execution_timezone": None,
            "description": None,
            "default_status": None,
            "tags": {},
        }
    ],
    "sensors": [
        {
            "name": "job2_sensor",
            "job_name": "job2",
            "minimum_interval_seconds": 30,
            "description": None,
            "default_status": None,
            "sensor_type": "standard",
            "job_names": ["job2"],
            "run_status": None,
            "monitored_jobs": None,
            "monitor_all_code_locations": False,
        }
    ],
}

EXPECTED_SENSOR = {
    "run_requests": [{"run_key": None, "run_config": {}, "tags": {}, "job_name": "job2"}],
    "skip_reason": None,
    "cursor": None,
}


def test_seed_loads_in_process(tmp_path: Path) -> None:
    path = tmp_path / "seed_repo.py"
    path.write_text(SEED)
    spec = importlib.util.spec_from_file_location("seed_repo_in_process", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    (repo,) = find_repositories(module)
    assert repository_snapshot(repo) == EXPECTED_SNAPSHOT
    assert evaluate_sensor(repo, "job2_sensor") == EXPECTED_SENSOR
    assert evaluate_schedule(repo, "job1_schedule", 0)["run_requests"][0]["job_name"] == "job1"
    assert execute_job(repo, "job3") == {"success": True, "result": None}


CHILD = textwrap.dedent(
    """
    import json, sys, sysconfig
    root = sys.argv[1]
    assert not [p for p in sys.path if "site-packages" in p or "dist-packages" in p], sys.path
    sys.path.insert(0, root)
    before = set(sys.modules)

    import seed_repo
    import workspace_manager
    from workspace_manager.sdk.discovery import find_repositories
    from workspace_manager.sdk.evaluation import evaluate_sensor
    from workspace_manager.sdk.snapshot import repository_snapshot

    (repo,) = find_repositories(seed_repo)
    stdlib = tuple(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib"))
    foreign = []
    for name, module in sorted(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if origin is None or origin.startswith(stdlib):
            continue
        if name == "seed_repo" or name.startswith("workspace_manager"):
            continue
        foreign.append(name)
    print(json.dumps({
        "version": list(sys.version_info[:2]),
        "wsm_version": workspace_manager.__version__,
        "snapshot": repository_snapshot(repo),
        "sensor": evaluate_sensor(repo, "job2_sensor"),
        "foreign_modules": foreign,
        "wsm_modules": sorted(n for n in sys.modules if n.startswith("workspace_manager")),
        "exports": sorted(n for n in dir(workspace_manager) if not n.startswith("_")),
    }))
    """
)

INTERPRETERS = {
    "debian": "/usr/bin/python3",
    "cpython39": "/root/.pyenv/versions/3.9.18/bin/python",
}


@pytest.mark.parametrize("label", sorted(INTERPRETERS))
def test_seed_loads_under_a_bare_interpreter(label: str, tmp_path: Path) -> None:
    python = INTERPRETERS[label]
    if not os.access(python, os.X_OK):
        pytest.skip(f"{python} is not installed here")
    package_dir = Path(workspace_manager.__file__).resolve().parent
    (tmp_path / "workspace_manager").symlink_to(package_dir)
    (tmp_path / "seed_repo.py").write_text(SEED)

    done = subprocess.run(
        [python, "-I", "-S", "-B", "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    if label == "cpython39":
        assert report["version"] == [3, 9]
    assert report["wsm_version"] == workspace_manager.__version__
    assert report["snapshot"] == EXPECTED_SNAPSHOT
    assert report["sensor"] == EXPECTED_SENSOR
    assert report["foreign_modules"] == []
    # the package root pulls in the SDK and version.py only, never the manager's packages
    assert all(
        name in ("workspace_manager", "workspace_manager.version")
        or name.startswith("workspace_manager.sdk")
        for name in report["wsm_modules"]
    ), report["wsm_modules"]
    assert report["exports"] == sorted(
        [
            "DagsterRun",
            "DagsterRunStatus",
            "DefaultScheduleStatus",
            "DefaultSensorStatus",
            "RunFailureSensorContext",
            "RunStatusSensorContext",
            "RunStatusSensorDefinition",
            "SensorResult",
            "build_run_status_sensor_context",
            "run_failure_sensor",
            "run_status_sensor",
            "DefinitionError",
            "Definitions",
            "JobDefinition",
            "RepositoryDefinition",
            "RunRequest",
            "ScheduleDefinition",
            "SensorDefinition",
            "SkipReason",
            "build_schedule_context",
            "build_sensor_context",
            "job",
            "repository",
            "schedule",
            "sensor",
            "sdk",
            "version",
        ]
    )


def test_package_root_exports_only_the_sdk() -> None:
    assert sorted(workspace_manager.__all__) == sorted(
        [
            "DagsterRun",
            "DagsterRunStatus",
            "DefaultScheduleStatus",
            "DefaultSensorStatus",
            "RunFailureSensorContext",
            "RunStatusSensorContext",
            "RunStatusSensorDefinition",
            "SensorResult",
            "build_run_status_sensor_context",
            "run_failure_sensor",
            "run_status_sensor",
            "DefinitionError",
            "Definitions",
            "JobDefinition",
            "RepositoryDefinition",
            "RunRequest",
            "ScheduleDefinition",
            "SensorDefinition",
            "SkipReason",
            "build_schedule_context",
            "build_sensor_context",
            "__version__",
            "job",
            "repository",
            "schedule",
            "sensor",
        ]
    )
    for name in workspace_manager.__all__:
        assert hasattr(workspace_manager, name)

"""The issue 9 SDK through a real loader process and under bare interpreters.

`evaluate_run_status_sensor`, the new snapshot fields, SensorResult and sensors of several
jobs, over the real protocol (a LoaderProcess on a Unix socket) under wsm's Python,
Debian's /usr/bin/python3 and CPython 3.9; and the SDK's new names imported and used with
`python -I -S` (no site-packages at all: standard library only).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator

import interpreters
import pytest

import workspace_manager
from workspace_manager.loader.harness import LoaderProcess, file_target
from workspace_manager.protocol.errors import RemoteError

INTERPRETERS = interpreters.params("wsm-python", *interpreters.BARE)
BARE_INTERPRETERS = interpreters.params(*interpreters.BARE)

REPO = textwrap.dedent(
    """
    from workspace_manager import (
        DagsterRunStatus, DefaultScheduleStatus, DefaultSensorStatus, RunRequest,
        ScheduleDefinition, SensorResult, SkipReason, job, repository, run_failure_sensor,
        run_status_sensor, schedule, sensor,
    )

    @job
    def etl():
        pass

    @job
    def report():
        pass

    @job
    def alert():
        pass

    nightly = ScheduleDefinition(name="nightly", job=etl, cron_schedule="0 2 * * *",
                                 default_status=DefaultScheduleStatus.RUNNING,
                                 tags={"team": "data"})

    @schedule("0 3 * * *", job=etl, default_status="stopped")
    def wrong(context):
        return SensorResult(run_requests=[RunRequest()])

    @sensor(jobs=[etl, report], default_status=DefaultSensorStatus.RUNNING)
    def fan_out(context):
        n = int(context.cursor or 0)
        return SensorResult(
            run_requests=[RunRequest(run_key=f"e{n}", job_name="etl"),
                          RunRequest(run_key=f"r{n}", job_name="report")],
            cursor=str(n + 1),
        )

    @sensor(jobs=[etl, report])
    def vague():
        yield RunRequest(run_key="no-job")

    @run_status_sensor(run_status=DagsterRunStatus.SUCCESS, request_job=report,
                       monitored_jobs=[etl])
    def chain(context):
        if context.dagster_run.tags.get("fail") == "1":
            raise ValueError("cannot chain " + context.dagster_run.run_id)
        return RunRequest(run_key="after-" + context.dagster_run.run_id,
                          run_config={"upstream": context.dagster_run.run_config})

    @run_failure_sensor(request_job=alert, default_status="RUNNING")
    def pager(context):
        if context.dagster_run.job_name == "alert":
            return SkipReason("no alerts about alerts")
        return RunRequest(run_key="page-" + context.dagster_run.run_id,
                          tags={"why": context.failure_event.message or ""})

    @repository
    def repo():
        return [nightly, wrong, fan_out, vague, chain, pager]
    """
)


@pytest.fixture
def rundir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="wsm-t", dir="/tmp")  # short: unix socket paths are limited
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture
def loader_for(rundir: str) -> Iterator[Any]:
    started = []

    def start(python: str) -> LoaderProcess:
        code = os.path.join(rundir, "code")
        os.makedirs(code, exist_ok=True)
        path = os.path.join(code, "repo.py")
        with open(path, "w") as f:
            f.write(REPO)
        loader = LoaderProcess(python, file_target(path), rundir, location="loc", env=_env())
        started.append(loader)
        event = loader.start()
        assert event is not None and event[1] == "loaded", (event, loader.stderr_text())
        return loader

    yield start
    for loader in started:
        loader.stop()
        assert loader.process is not None and loader.process.poll() is not None


def _run(run_id: str, job: str, status: str, **extra: Any) -> Dict[str, Any]:
    return {"run_id": run_id, "job_name": job, "status": status, **extra}


@pytest.mark.parametrize("python", INTERPRETERS)
def test_snapshot_fields_over_the_protocol(loader_for: Any, python: str) -> None:
    loader = loader_for(python)
    with loader.client(timeout=20) as client:
        (repo,) = client.call("get_snapshot")["repositories"]
    schedules = {s["name"]: s for s in repo["schedules"]}
    assert schedules["nightly"]["default_status"] == "RUNNING"
    assert schedules["nightly"]["tags"] == {"team": "data"}
    assert schedules["wrong"]["default_status"] == "STOPPED"
    sensors = {s["name"]: s for s in repo["sensors"]}
    assert sensors["fan_out"]["job_name"] is None
    assert sensors["fan_out"]["job_names"] == ["etl", "report"]
    assert sensors["fan_out"]["sensor_type"] == "standard"
    assert sensors["fan_out"]["default_status"] == "RUNNING"
    assert sensors["vague"]["default_status"] is None
    assert sensors["chain"]["sensor_type"] == "run_status"
    assert sensors["chain"]["run_status"] == "SUCCESS"
    assert sensors["chain"]["monitored_jobs"] == ["etl"]
    assert sensors["chain"]["job_names"] == ["report"]
    assert sensors["pager"]["run_status"] == "FAILURE"
    assert sensors["pager"]["monitored_jobs"] is None
    assert sensors["pager"]["default_status"] == "RUNNING"


@pytest.mark.parametrize("python", INTERPRETERS)
def test_evaluate_run_status_sensor_over_the_protocol(loader_for: Any, python: str) -> None:
    loader = loader_for(python)
    runs = [
        _run("a", "etl", "SUCCESS", run_config={"rows": 3}, location="loc"),
        _run("b", "etl", "FAILURE", error="boom", location="loc"),
        _run("c", "report", "SUCCESS", location="loc"),  # not monitored
        _run("d", "etl", "SUCCESS", tags={"fail": "1"}, location="loc"),  # raises
        _run("e", "etl", "SUCCESS", location="other_location"),  # not this location
        _run("f", "etl", "SUCCESS", location="loc"),
    ]
    with loader.client(timeout=20) as client:
        chain = client.call("evaluate_run_status_sensor", {"sensor": "chain", "runs": runs})
        # a run record as the storage keeps it: "job" for the name, extra keys ignored
        record = {
            "run_id": "g",
            "job": "etl",
            "status": "FAILURE",
            "error": "OOM killed",
            "end_seq": 7,
            "pid": 12,
            "origin": {"kind": "manual"},
        }
        pager = client.call(
            "evaluate_run_status_sensor",
            {
                "sensor": "pager",
                "repository": "repo",
                "runs": [record, _run("h", "alert", "FAILURE")],
            },
        )
    assert [(r["run_key"], r["job_name"], r["run_config"]) for r in chain["run_requests"]] == [
        ("after-a", "report", {"upstream": {"rows": 3}}),
        ("after-f", "report", {"upstream": {}}),
    ]
    assert chain["skip_reason"] is None
    results = {r["run_id"]: r for r in chain["results"]}
    assert [r["run_id"] for r in chain["results"]] == ["a", "b", "c", "d", "e", "f"]
    assert [results[i]["delivered"] for i in "abcdef"] == [True, False, False, True, False, True]
    assert results["b"]["skip_reason"] == "run status FAILURE is not SUCCESS"
    assert results["c"]["skip_reason"] == "job 'report' is not monitored"
    assert results["e"]["skip_reason"] == "run of location 'other_location', not 'loc'"
    error = results["d"]["error"]
    assert error["type"] == "UserCodeError"
    assert error["message"] == "ValueError: cannot chain d"
    assert "cannot chain" in error["traceback"] and "repo.py" in error["traceback"]
    assert all(results[i]["error"] is None for i in "abcef")

    assert [(r["run_key"], r["job_name"], r["tags"]) for r in pager["run_requests"]] == [
        ("page-g", "alert", {"why": "OOM killed"})
    ]
    assert pager["results"][1]["skip_reason"] == "no alerts about alerts"


@pytest.mark.parametrize("python", INTERPRETERS[:1] + BARE_INTERPRETERS[:1])
def test_sensor_result_and_several_jobs_over_the_protocol(loader_for: Any, python: str) -> None:
    loader = loader_for(python)
    with loader.client(timeout=20) as client:
        first = client.call("evaluate_sensor", {"sensor": "fan_out"})
        second = client.call("evaluate_sensor", {"sensor": "fan_out", "cursor": first["cursor"]})
        with pytest.raises(RemoteError) as vague:
            client.call("evaluate_sensor", {"sensor": "vague"})
        with pytest.raises(RemoteError) as wrong:
            client.call("evaluate_schedule", {"schedule": "wrong", "scheduled_time": 0})
        assert client.call("ping")["pid"] == loader.pid  # still serving
    assert [(r["run_key"], r["job_name"]) for r in first["run_requests"]] == [
        ("e0", "etl"),
        ("r0", "report"),
    ]
    assert first["cursor"] == "1" and second["cursor"] == "2"
    assert vague.value.type == "DefinitionError"
    assert "sensor 'vague' targets several jobs (etl, report)" in vague.value.message
    assert wrong.value.type == "DefinitionError"
    assert "schedule 'wrong' produced a SensorResult, which only a sensor" in wrong.value.message


@pytest.mark.parametrize(
    "params, message",
    [
        ({"sensor": "chain"}, "parameter 'runs' is required"),
        ({"sensor": "chain", "runs": {}}, "parameter 'runs' has the wrong type"),
        ({"sensor": "chain", "runs": [3]}, r"runs\[0\] must be a map"),
        (
            {"sensor": "chain", "runs": [{"job_name": "etl", "status": "SUCCESS"}]},
            "'run_id' is required",
        ),
        ({"sensor": "chain", "runs": [_run("a", "etl", "DONE")]}, "status 'DONE' is not one of"),
        (
            {"sensor": "chain", "runs": [_run("a", "etl", "SUCCESS", tags={"k": 1})]},
            "tags must map str",
        ),
        ({"sensor": "chain", "runs": [_run("a", "bad name", "SUCCESS")]}, "job name 'bad name'"),
        ({"sensor": "chain", "runs": [], "cursor": "x"}, "unknown parameter 'cursor'"),
    ],
)
def test_bad_params_are_invalid_params(loader_for: Any, params: dict, message: str) -> None:
    loader = loader_for(sys.executable)
    with loader.client(timeout=20) as client:
        with pytest.raises(RemoteError) as err:
            client.call("evaluate_run_status_sensor", params)
    assert err.value.type == "InvalidParams"
    assert __import__("re").search(message, err.value.message), err.value.message


def test_unknown_and_wrong_kind_of_sensor(loader_for: Any) -> None:
    loader = loader_for(sys.executable)
    with loader.client(timeout=20) as client:
        with pytest.raises(RemoteError) as unknown:
            client.call("evaluate_run_status_sensor", {"sensor": "nope", "runs": []})
        with pytest.raises(RemoteError) as plain:
            client.call("evaluate_run_status_sensor", {"sensor": "fan_out", "runs": []})
        with pytest.raises(RemoteError) as interval:
            client.call("evaluate_sensor", {"sensor": "chain"})
        empty = client.call("evaluate_run_status_sensor", {"sensor": "chain", "runs": []})
    assert unknown.value.type == "NotFound"
    assert (
        plain.value.type == "DefinitionError" and "not a run status sensor" in plain.value.message
    )
    assert (
        interval.value.type == "DefinitionError"
        and "is a run status sensor" in interval.value.message
    )
    assert empty == {"run_requests": [], "skip_reason": None, "results": []}


BARE_CHILD = textwrap.dedent(
    """
    import json, sys, sysconfig
    assert not [p for p in sys.path if "site-packages" in p or "dist-packages" in p], sys.path
    sys.path.insert(0, sys.argv[1])
    from workspace_manager import (
        DagsterRun, DagsterRunStatus, DefaultScheduleStatus, DefaultSensorStatus,
        RepositoryDefinition, RunFailureSensorContext, RunRequest, RunStatusSensorContext,
        ScheduleDefinition, SensorResult, SkipReason, build_run_status_sensor_context,
        build_schedule_context, build_sensor_context, job, run_failure_sensor,
        run_status_sensor, schedule, sensor,
    )
    from workspace_manager.sdk import DagsterRunStatus as SdkStatus
    from workspace_manager.sdk.evaluation import evaluate_run_status_sensor, evaluate_sensor
    from workspace_manager.sdk.snapshot import repository_snapshot

    @job
    def etl():
        pass

    @job
    def report():
        pass

    @sensor(jobs=[etl, report], default_status=DefaultSensorStatus.RUNNING)
    def both(context):
        return SensorResult(run_requests=[RunRequest(job_name="report")], cursor="c1")

    @schedule("@daily", job=etl, default_status=DefaultScheduleStatus.STOPPED)
    def daily(context):
        return RunRequest(run_key=context.scheduled_execution_time.isoformat())

    @run_failure_sensor(request_job=report)
    def pager(context: RunFailureSensorContext):
        return RunRequest(run_key=context.failure_event.message)

    @run_status_sensor(run_status="success")
    def watcher(context: RunStatusSensorContext):
        return SkipReason("seen " + context.dagster_run.run_id)

    repo = RepositoryDefinition("r", [both, daily, pager, watcher])
    failed = DagsterRun(job_name="etl", run_id="x", status=DagsterRunStatus.FAILURE, error="e!")
    out = {
        "version": list(sys.version_info[:2]),
        "same_enum": SdkStatus is DagsterRunStatus,
        "snapshot": repository_snapshot(repo),
        "sensor": evaluate_sensor(repo, "both"),
        "runs": evaluate_run_status_sensor(
            repo, "watcher",
            [{"run_id": "a", "job_name": "etl", "status": "SUCCESS"}, failed], "loc"),
        "direct_failure": pager(build_run_status_sensor_context("pager", None, None, failed)).run_key,
        "direct_sensor": both(build_sensor_context(cursor="c0")).cursor,
        "direct_schedule": daily(build_schedule_context(
            __import__("datetime").datetime(2024, 1, 2))).run_key,
        "modules": sorted(
            name for name, m in list(sys.modules.items())  # get_paths() may import
            if getattr(m, "__file__", None)
            and not m.__file__.startswith(tuple(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")))
            and not name.startswith("workspace_manager")
        ),
    }
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("python", BARE_INTERPRETERS)
def test_new_sdk_names_work_under_a_bare_interpreter(python: str, tmp_path: Path) -> None:
    package_dir = Path(workspace_manager.__file__).resolve().parent
    (tmp_path / "workspace_manager").symlink_to(package_dir)
    done = subprocess.run(
        [python, "-I", "-S", "-B", "-c", BARE_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    if python == interpreters.PY39:
        assert out["version"] == [3, 9]
    assert out["same_enum"] is True
    assert out["modules"] == []  # nothing outside the standard library was imported
    sensors = {s["name"]: s for s in out["snapshot"]["sensors"]}
    assert sensors["both"]["job_names"] == ["etl", "report"]
    assert sensors["both"]["default_status"] == "RUNNING"
    assert sensors["pager"]["run_status"] == "FAILURE"
    assert sensors["watcher"]["run_status"] == "SUCCESS"
    assert out["snapshot"]["schedules"][0]["default_status"] == "STOPPED"
    assert out["sensor"] == {
        "run_requests": [{"run_key": None, "run_config": {}, "tags": {}, "job_name": "report"}],
        "skip_reason": None,
        "cursor": "c1",
    }
    assert out["runs"]["skip_reason"] == "seen a"
    assert [r["delivered"] for r in out["runs"]["results"]] == [True, False]
    assert out["direct_failure"] == "e!"
    assert out["direct_sensor"] == "c1"
    assert out["direct_schedule"] == "2024-01-02T00:00:00+00:00"


def test_the_callers_location_name_wins(loader_for: Any) -> None:
    loader = loader_for(sys.executable)  # the loader calls itself "loc"
    runs = [
        _run("a", "etl", "SUCCESS", location="loc"),
        _run("b", "etl", "SUCCESS", location="team_b"),
    ]
    with loader.client(timeout=20) as client:
        own = client.call("evaluate_run_status_sensor", {"sensor": "chain", "runs": runs})
        named = client.call(
            "evaluate_run_status_sensor", {"sensor": "chain", "runs": runs, "location": "team_b"}
        )
    assert [r["delivered"] for r in own["results"]] == [True, False]
    assert [r["delivered"] for r in named["results"]] == [False, True]


DAGSTER_STYLE = textwrap.dedent(
    """
    from workspace_manager import (
        DagsterRunStatus, Definitions, DefaultScheduleStatus, DefaultSensorStatus, RunRequest,
        ScheduleDefinition, SensorResult, job, run_failure_sensor, run_status_sensor, sensor,
    )

    @job
    def extract():
        pass

    @job
    def load():
        pass

    @sensor(jobs=[extract, load], default_status=DefaultSensorStatus.RUNNING)
    def files(context):
        return SensorResult(run_requests=[RunRequest(job_name="load")], cursor="1")

    @run_status_sensor(run_status=DagsterRunStatus.SUCCESS, monitored_jobs=[extract],
                       request_job=load)
    def then_load(context):
        return RunRequest(run_key=context.dagster_run.run_id)

    @run_failure_sensor
    def page_me(context):
        print(context.failure_event.message)

    defs = Definitions(
        schedules=[ScheduleDefinition(job=extract, cron_schedule="@daily",
                                      default_status=DefaultScheduleStatus.RUNNING)],
        sensors=[files, then_load, page_me],
    )
    """
)


def test_wsm_list_shows_the_new_shapes(ws: Any) -> None:
    ws.file("code/defs_mod.py", DAGSTER_STYLE)
    ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "code/defs_mod.py", "location_name": "d"}}
            ]
        }
    )
    listed = ws.run("list", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (repo,) = json.loads(listed.stdout)["locations"]["d"]["repositories"]
    assert [j["name"] for j in repo["jobs"]] == ["extract", "load"]
    assert repo["schedules"][0]["default_status"] == "RUNNING"
    sensors = {s["name"]: s for s in repo["sensors"]}
    assert sensors["files"]["job_names"] == ["extract", "load"]
    assert sensors["then_load"]["run_status"] == "SUCCESS"
    assert sensors["page_me"]["run_status"] == "FAILURE"
    human = ws.run("list").stdout
    assert "sensor    files -> extract, load (every 30s)" in human
    assert "sensor    then_load on SUCCESS of extract -> load (every 30s)" in human
    assert "sensor    page_me on FAILURE of any job (every 30s)" in human

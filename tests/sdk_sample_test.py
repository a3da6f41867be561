"""sample_workspaces/teams: every location loads and runs offline, each under its own interpreter.

Each location is imported in a child started the way a loader is (`-I -S`, wsm only
through a symlink, cwd = working_directory, env_vars set), so the sample cannot lean
on anything installed. The child evaluates every sensor and schedule at a fixed
tick, then executes every requested run, and reports back as JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict

import pytest

import workspace_manager
from workspace_manager.workspace.load import load_workspace
from workspace_manager.workspace.model import LocationConfig

TEAMS = Path(__file__).resolve().parent.parent / "sample_workspaces" / "teams"
# Saturday 2 March 2024, 14:00 UTC: 09:00 in New York, 15:00 in Paris.
TICK = dt.datetime(2024, 3, 2, 14, 0, tzinfo=dt.timezone.utc).timestamp()

CHILD = textwrap.dedent(
    """
    import importlib, importlib.util, json, sys
    sdk_dir, target = sys.argv[1], json.loads(sys.argv[2])
    sys.path[:0] = [sdk_dir, target["working_directory"]]
    from workspace_manager.sdk.discovery import find_repositories
    from workspace_manager.sdk.evaluation import (
        evaluate_run_status_sensor, evaluate_schedule, evaluate_sensor, execute_job)
    from workspace_manager.sdk.snapshot import repository_snapshot

    if target["python_file"]:
        spec = importlib.util.spec_from_file_location("location_code", target["python_file"])
        module = importlib.util.module_from_spec(spec)
        sys.modules["location_code"] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target["module_name"])

    report = {"executable": sys.executable, "repositories": {}}
    for repo in find_repositories(module, target["attribute"]):
        out = {"snapshot": repository_snapshot(repo), "sensors": {}, "schedules": {},
               "again": {}, "runs": [], "jobs": {}}
        status_sensors = [s for s in repo.sensors if s.sensor_type == "run_status"]
        for sensor in repo.sensors:
            if sensor.name == "slow_sensor" or sensor in status_sensors:
                continue
            first = evaluate_sensor(repo, sensor.name)
            out["sensors"][sensor.name] = first
            keys = [r["run_key"] for r in first["run_requests"]]
            out["again"][sensor.name] = evaluate_sensor(
                repo, sensor.name, first["cursor"], keys[-1] if keys else None)
        for schedule in repo.schedules:
            out["schedules"][schedule.name] = evaluate_schedule(repo, schedule.name, target["tick"])
        requested = [r for result in list(out["sensors"].values()) + list(out["schedules"].values())
                     for r in result["run_requests"]]
        def execute(request):
            try:
                return execute_job(repo, request["job_name"], request["run_config"])
            except Exception as exc:  # a run that fails, as a run process would report it
                return {"success": False, "error": {"message": str(exc)}}

        failed = []
        for number, request in enumerate(requested):
            result = execute(request)
            out["runs"].append([request["job_name"], result])
            if not result["success"]:
                failed.append({"run_id": "run-%d" % number, "job_name": request["job_name"],
                               "status": "FAILURE", "location": target["location"],
                               "error": result["error"]})
        # run failure sensors get each failed run once; their runs are executed too
        for sensor in status_sensors:
            result = evaluate_run_status_sensor(repo, sensor.name, failed, target["location"])
            out["sensors"][sensor.name] = result
            for request in result["run_requests"]:
                out["runs"].append([request["job_name"], execute(request)])
                requested.append(request)
        for job in repo.jobs:
            if job.name not in {r["job_name"] for r in requested}:
                out["jobs"][job.name] = execute_job(repo, job.name)
        report["repositories"][repo.name] = out
    print(json.dumps(report))
    """
)


def run_location(location: LocationConfig, tmp_path: Path) -> subprocess.CompletedProcess:
    sdk_dir = tmp_path / "sdk"
    if not sdk_dir.exists():
        sdk_dir.mkdir()
        (sdk_dir / "workspace_manager").symlink_to(Path(workspace_manager.__file__).parent)
    target = location.target
    assert isinstance(target.working_directory, Path)
    payload = {
        "working_directory": str(target.working_directory),
        "python_file": str(target.python_file) if target.python_file else None,
        "module_name": target.module_name,
        "attribute": target.attribute,
        "tick": TICK,
        "location": location.name,
    }
    python = str(location.executable_path) if location.executable_path else sys.executable
    return subprocess.run(
        [python, "-I", "-S", "-B", "-c", CHILD, str(sdk_dir), json.dumps(payload)],
        cwd=target.working_directory,
        env={**os.environ, **dict(location.env_vars)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("sample")
    workspace = load_workspace(TEAMS / "workspace.yaml")
    out = {}
    for location in workspace.locations:
        done = run_location(location, tmp_path)
        assert done.returncode == 0, f"{location.name}: {done.stderr}"
        out[location.name] = json.loads(done.stdout)
    return out


def test_locations_and_kinds() -> None:
    workspace = load_workspace(TEAMS / "workspace.yaml")
    kinds = {loc.name: loc.target.kind for loc in workspace.locations}
    assert kinds == {
        "ingest": "python_file",
        "analytics": "python_module",
        "analytics_adhoc": "python_module",
        "billing": "python_package",
    }
    assert workspace.location("ingest").executable_path == Path("/usr/bin/python3")


def test_ingest_runs_under_debian_python(reports: Dict[str, Any]) -> None:
    report = reports["ingest"]
    assert report["executable"] == "/usr/bin/python3"
    ingest = report["repositories"]["ingest"]
    assert ingest["snapshot"]["description"] == "Drop-folder ingestion."
    assert [s["name"] for s in ingest["snapshot"]["sensors"]] == [
        "new_drop_files",
        "catalog_once_per_hour",
        "slow_sensor",
    ]
    files = ingest["sensors"]["new_drop_files"]
    assert [r["run_key"] for r in files["run_requests"]] == [
        "orders_2024-01-01.csv",
        "orders_2024-01-02.csv",
        "refunds_2024-01-02.csv",
    ]
    assert files["run_requests"][0]["tags"] == {"source": "drop", "file": "orders_2024-01-01.csv"}
    assert files["cursor"] == "refunds_2024-01-02.csv"
    assert ingest["again"]["new_drop_files"]["run_requests"] == []
    assert (
        "no file after 'refunds_2024-01-02.csv'" in ingest["again"]["new_drop_files"]["skip_reason"]
    )
    assert "already refreshed" in ingest["again"]["catalog_once_per_hour"]["skip_reason"]
    loads = [result["result"] for job, result in ingest["runs"] if job == "load_file"]
    assert [(r["file"], r["rows"], r["team"]) for r in loads] == [
        ("orders_2024-01-01.csv", 3, "ingest"),
        ("orders_2024-01-02.csv", 2, "ingest"),
        ("refunds_2024-01-02.csv", 1, "ingest"),
    ]


def test_analytics_attribute_picks_one_repository(reports: Dict[str, Any]) -> None:
    assert list(reports["analytics"]["repositories"]) == ["analytics_daily"]
    assert list(reports["analytics_adhoc"]["repositories"]) == ["analytics_adhoc"]
    daily = reports["analytics"]["repositories"]["analytics_daily"]
    zones = {s["name"]: s["execution_timezone"] for s in daily["snapshot"]["schedules"]}
    assert zones == {
        "compute_daily_metrics_schedule": "America/New_York",
        "dashboard_refresh": "Europe/London",
    }
    metrics = dict(daily["runs"])["compute_daily_metrics"]["result"]
    assert metrics["warehouse"] == "sqlite:///warehouse.db"  # from env_vars
    assert (metrics["count"], metrics["total"]) == (3, 6.0)
    dashboard = daily["schedules"]["dashboard_refresh"]["run_requests"][0]
    assert dashboard["run_key"] == "2024-03-02T14:00+0000"


def test_analytics_backfill_sensor_uses_its_cursor(reports: Dict[str, Any]) -> None:
    adhoc = reports["analytics_adhoc"]["repositories"]["analytics_adhoc"]
    queue = adhoc["sensors"]["backfill_queue"]
    assert [r["run_config"] for r in queue["run_requests"]] == [
        {"days": ["2024-01-01", "2024-01-02"]},
        {"days": ["2024-02-29"]},
    ]
    assert queue["cursor"] == "2"
    assert adhoc["again"]["backfill_queue"]["skip_reason"] == "queue drained"
    assert adhoc["jobs"]["publish_dashboard"]["result"] == {"published_to": "sqlite:///scratch.db"}


def test_billing_package(reports: Dict[str, Any]) -> None:
    billing = reports["billing"]["repositories"]["billing"]
    events = billing["sensors"]["failed_payments"]
    assert [(r["job_name"], r["run_key"]) for r in events["run_requests"]] == [
        ("retry_payment", "retry-pay_002-2"),
        ("retry_payment", "retry-pay_004-4"),
        ("reconcile_payments", "reconcile-after-4"),
    ]
    assert events["cursor"] == "4"
    assert billing["again"]["failed_payments"]["skip_reason"] == "no payment event after id 4"
    schedules = billing["schedules"]
    assert schedules["weekday_dunning"] == {
        "run_requests": [],
        "skip_reason": "Saturday: no dunning emails at weekends",
    }
    invoice = schedules["monthly_invoices"]["run_requests"][0]
    assert (invoice["run_key"], invoice["tags"]) == ("invoices-2024-02", {"team": "billing"})
    runs = dict((job, result.get("result")) for job, result in billing["runs"])
    assert runs["generate_invoices"] == {"period": "2024-02", "currency": "EUR"}
    retries = [result for job, result in billing["runs"] if job == "retry_payment"]
    # pay_002's card_declined is a hard decline: that run fails, and pages on-call
    assert retries == [
        {
            "success": False,
            "error": {
                "message": "pay_002: card_declined is final, the customer must update the card"
            },
        },
        {"success": True, "result": {"retried": "pay_004"}},
    ]
    pages = billing["sensors"]["billing_failures"]["run_requests"]
    assert [(r["job_name"], r["run_key"]) for r in pages] == [("page_on_call", "page-run-0")]
    assert runs["page_on_call"] == {"paged": "run-0"}
    assert billing["jobs"]["send_dunning_emails"]["result"] == "sent"


def test_broken_workspace_adds_exactly_one_failing_location(tmp_path: Path) -> None:
    def comparable(location: LocationConfig) -> LocationConfig:
        return dataclasses.replace(location, line=0, column=0)

    good = load_workspace(TEAMS / "workspace.yaml")
    broken = load_workspace(TEAMS / "workspace-with-broken.yaml")
    assert [comparable(loc) for loc in broken.locations[:-1]] == [
        comparable(loc) for loc in good.locations
    ]
    assert broken.supervision == good.supervision
    extra = broken.locations[-1]
    assert extra.name == "broken"
    done = run_location(extra, tmp_path)
    assert done.returncode != 0
    assert "No module named 'acme_warehouse_client'" in done.stderr

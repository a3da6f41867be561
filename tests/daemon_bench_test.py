"""Smoke test of bench/daemon_bench.py's pieces that need no manager and no Dagster: the
locations it writes are valid repositories of the promised shape, the process-tree helpers
see a real child tree, and the figures and verdicts are computed as documented."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import daemon_bench  # noqa: E402
import measure  # noqa: E402

from workspace_manager.sdk.context import build_schedule_context, build_sensor_context  # noqa: E402
from workspace_manager.sdk.discovery import find_repositories  # noqa: E402
from workspace_manager.sdk.snapshot import repository_snapshot  # noqa: E402


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_instigator_location_has_100_schedules_and_30s_sensors(tmp_path: Path) -> None:
    ws = daemon_bench.Workspace(tmp_path, "many")
    ws.write({"l03": daemon_bench.MANY_REPO.format(loc="l03", count=100, offset=3)})
    (repo,) = find_repositories(_load(ws.dir / "l03" / "l03_repo.py", "bench_many_l03"))
    snap = repository_snapshot(repo)
    assert len(snap["schedules"]) == 100 and len(snap["sensors"]) == 100
    assert {s["minimum_interval_seconds"] for s in snap["sensors"]} == {30}
    crons = {s["cron_schedule"] for s in snap["schedules"]}
    assert len(crons) == 100 and all(c.endswith(" * * *") for c in crons)  # daily, spread
    assert '"daemon"' in (ws.dir / "workspace.yaml").read_text()


def test_bench_location_stamps_the_sensor_request_and_keys_it(tmp_path: Path) -> None:
    ws = daemon_bench.Workspace(tmp_path, "sensor")
    ws.write({"loc": daemon_bench.bench_repo(ws, "sensor")})
    module = _load(ws.dir / "loc" / "loc_repo.py", "bench_sensor_loc")
    (repo,) = find_repositories(module)
    assert [s["name"] for s in repository_snapshot(repo)["sensors"]] == ["trigger_sensor"]
    daemon_bench.write_stamp(ws.out / "trigger-000", time.time())
    requests, _ = module.trigger_sensor.evaluate(build_sensor_context())
    assert [r.run_key for r in requests] == ["trigger-000"]
    assert requests[0].tags == {"bench_trigger": "trigger-000"}
    assert "request-trigger-000" in daemon_bench.read_stamps(ws.out, "request-")
    again, _ = module.trigger_sensor.evaluate(build_sensor_context())
    assert again == []  # one request per trigger file


def test_bench_location_burst_and_schedule(tmp_path: Path) -> None:
    ws = daemon_bench.Workspace(tmp_path, "burst")
    ws.write({"loc": daemon_bench.bench_repo(ws, "burst", burst=7)})
    module = _load(ws.dir / "loc" / "loc_repo.py", "bench_burst_loc")
    requests, _ = module.burst_sensor.evaluate(build_sensor_context())
    assert len({r.run_key for r in requests}) == 7
    assert module.burst_sensor.evaluate(build_sensor_context())[0] == []
    when = build_schedule_context().scheduled_execution_time
    (request,), _ = module.every_minute.evaluate(build_schedule_context(when))
    assert float(request.tags["bench_tick"]) == when.timestamp()


def test_process_tree_and_its_peak_rss_see_grandchildren() -> None:
    # python -> python -> sleep: a grandchild, as a run under Dagster's code server
    inner = "import subprocess; subprocess.run(['sleep', '30'])"
    outer = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {inner!r}])"
    proc = measure.spawn([sys.executable, "-c", outer])
    try:
        deadline = time.monotonic() + 30
        while len(measure.process_tree(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = measure.process_tree(proc.pid)
        assert len(tree) == 3 and tree[0] == proc.pid
        with measure.PeakRss(proc.pid, interval_s=0.01) as rss:
            time.sleep(0.1)
        assert rss.peak_processes == 3 and rss.peak_tree_bytes > rss.peak_root_bytes > 0
    finally:
        left = measure.process_tree(proc.pid)
        measure.stop(proc)
        measure.kill_tree(left)
    deadline = time.monotonic() + 10  # a killed process takes a moment to become a zombie
    while measure.kill_tree(left) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert measure.kill_tree(left) == []


def test_figures_over_the_floor_and_verdicts() -> None:
    side = {
        "floor": {"median_ms": 50.0},
        "execute": {"wall_ms": 180.0},
        "sensor": {"request_to_first_line_ms": 120.0},
        "schedule": {"tick_to_first_line_p99_ms": 90.0},
        "burst": {"all_success": True, "requests": 200},
        "instigators": {"error": "RuntimeError: wsm sensor list --json: no such command"},
    }
    flat = daemon_bench.flatten(side, dagster=False)
    assert flat["execute_wall_over_floor_ms"] == 130.0
    assert flat["sensor_request_to_first_line_over_floor_ms"] == 70.0
    verdicts = daemon_bench.verdicts(flat)
    assert verdicts == {
        "sensor_request_to_first_line_over_floor_ms": False,
        "schedule_tick_to_first_line_p99_ms": True,
        "execute_wall_over_floor_ms": True,
        "burst_all_success": True,
        "instigators_manager_cpu_pct": None,  # not measured: never counted as met
    }
    assert daemon_bench.max_overlap([(0, 2), (1, 3), (2, 4), (5, 6)]) == 2


def test_help_runs_without_dagster_or_a_manager() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "daemon_bench.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "--dagster-requests" in done.stdout

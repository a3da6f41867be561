"""bench/startup_bench.py runs end to end in its quickest form, so it cannot silently rot.

Not a measurement (the rules: speed in bench/, never a timed assertion): the figures must be
there and plausible, every `wsm up` it started must be gone, and the install is named the
way the lead compares builds (`--wsm VENV`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

import workspace_manager

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "startup_bench.py"
VENV = Path(sys.executable).parent.parent  # the install under test, named as its virtualenv

sys.path.insert(0, str(ROOT / "bench"))
import startup_bench  # noqa: E402


def test_extrapolation_is_a_line_through_the_measured_points():
    assert startup_bench.extrapolate({2: 4000.0}, 100) == pytest.approx(200000.0)
    assert startup_bench.extrapolate({1: 2500.0, 10: 7000.0}, 100) == pytest.approx(52000.0)


def test_a_missing_wsm_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="no wsm executable"):
        startup_bench.Target.resolve(str(tmp_path))


def test_the_install_is_the_venvs_not_a_package_in_the_working_folder(tmp_path, monkeypatch):
    # `python -c` puts the working folder first on sys.path: a checkout there must not pass
    # for the install under test
    (tmp_path / "workspace_manager").mkdir()
    (tmp_path / "workspace_manager" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    target = startup_bench.Target.resolve(str(Path(sys.executable).parent / "wsm"))
    assert target.python == Path(sys.executable).parent / "python"
    # the package this interpreter imports: the checkout (editable) or site-packages (a wheel)
    assert target.package_dir == str(Path(workspace_manager.__file__).resolve().parent)


def test_a_wsm_up_that_never_got_ready_is_a_row_not_a_crash():
    ms = {"count": 1, "median_ms": 50.0, "min_ms": 50.0, "max_ms": 50.0}
    stop = {"exit_code": 0, "stop_s": 1.0, "processes_seen": 1001, "processes_left": []}
    result = {
        "floors": {"python_pass": ms, "python_import_repo": ms, "bare_uss_mb": 8.0},
        "commands": {"version": ms, "status_no_manager": ms, "list_1": ms},
        "up": {
            "1000": {
                "locations": 1000,
                "error": "/readyz not 200 after 560 s (log: up.log)",
                "states": {"ready": 990, "error": 10},
                "stop": stop,
            }
        },
    }
    table = "\n".join(startup_bench.report(result))
    assert "wsm up, 1000: FAILED" in table and '"error": 10' in table
    targets = startup_bench.check_targets(result)
    assert targets["up_1000_livez_p99_ms"]["met"] is None
    assert targets["wsm_version_ms"]["met"] is True


def test_a_report_of_some_parts_only_has_their_rows():
    # `--only launch --compare OTHER`: no floors, no commands, no `wsm up`; two installs
    ms = {"median_ms": 50.0, "min_ms": 40.0, "max_ms": 60.0}
    rounds = {n: ms for n in startup_bench.LAUNCH_FIGURES}
    rounds.update(job_execute_over_floor_ms=10.0, queued_launch_over_floor_ms=5.0)
    median = {n: 50.0 for n in startup_bench.LAUNCH_FIGURES}
    median.update(job_execute_over_floor_ms=10.0, queued_launch_over_floor_ms=5.0)
    result = {
        "up": {},
        "launch_compare": {
            "/after/bin/wsm": {"version": "wsm 2", "median": median, "rounds": [rounds]},
            "/before/bin/wsm": {
                "version": "wsm 1",
                "median": median,
                "min": {n: 40.0 for n in startup_bench.LAUNCH_FIGURES},
                "rounds": [rounds],
            },
        },
        "fork_latency": {
            "requests": 5,
            "server_start_ms": 80.0,
            "fork_round_trip_ms_p50": 2.0,
            "fork_round_trip_ms_p90": 3.0,
            "server_cpu_ms_per_fork": 1.0,
        },
    }
    table = "\n".join(startup_bench.report(result))
    assert "launch, wsm 1 (/before/bin/wsm)" in table and "launch, wsm 2 (/after/bin/wsm)" in table
    assert "fork round trip" in table and "wsm --version" not in table
    assert re.search(
        r"fastest: job execute; queued launch; floor +40.0 ms; 40.0 ms +40.0 ms", table
    )
    assert startup_bench.check_targets(result)["wsm_version_ms"]["met"] is None


def test_an_unknown_part_or_a_comparison_without_launch_is_one_clear_line(capsys):
    with pytest.raises(SystemExit) as exited:
        startup_bench.main(["--only", "up,nope"])
    assert exited.value.code == 2
    assert "no part nope" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # --quick runs no launch
        startup_bench.main(["--quick", "--compare", "/elsewhere"])
    assert exited.value.code == 2
    assert "--compare measures the run launch" in capsys.readouterr().err


def test_the_managers_own_ready_times_are_read_from_its_log(tmp_path):
    log = tmp_path / "up.log"
    log.write_text(
        "12:00:00 loc000 ready: 1 repository, 1 job, 0 schedules, 0 sensors in 40 ms\n"
        "12:00:00 loc001 ready: 1 repository, 1 job, 0 schedules, 0 sensors in 60 ms\n"
        "12:00:00 health endpoint on http://127.0.0.1:1234\n"
    )
    assert startup_bench.manager_ready_ms(log) == 50
    assert startup_bench.manager_ready_ms(tmp_path / "none.log") is None


def test_the_import_time_of_a_module_is_summed_after_site():
    figures = startup_bench.measure.import_time_ms(sys.executable, "import json", 2)
    assert 0 < figures["min"] <= figures["median"]


FAKE_UP = """\
import os, subprocess, sys, time
# a `wsm up` that leaves a grandchild behind, in a session of its own, when it is stopped
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)  # MARKER"], start_new_session=True
)
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_process_left_behind_by_wsm_up_is_found_killed_and_reported(tmp_path):
    fake = tmp_path / "wsm"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_UP.replace("MARKER", str(tmp_path)))
    fake.chmod(0o755)
    target = startup_bench.Target(fake, Path(sys.executable))
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from: []\n")
    log = tmp_path / "up.log"
    up = startup_bench.Up(target, workspace, {**os.environ}, log)
    deadline = time.monotonic() + 30
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.02)
    grandchild = int(log.read_text().split()[0])
    up.track()
    stopped = up.close(grace_s=0.5)
    assert stopped["processes_left"] == [grandchild]
    deadline = time.monotonic() + 10
    while startup_bench.measure.alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not startup_bench.measure.alive(grandchild)


def run_bench(tmp_path: Path, *args: str) -> Tuple[subprocess.CompletedProcess, Dict[str, Any]]:
    """startup_bench.py run to its end on this interpreter's install (named as its
    virtualenv); it must exit 0. Its process and its last line, the JSON."""
    done = subprocess.run(
        [sys.executable, str(BENCH), "--wsm", str(VENV), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return done, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_quickest_run_measures_every_wsm_figure_and_leaves_nothing(tmp_path):
    done, result = run_bench(
        tmp_path, "--quick", "--no-dagster", "--sizes", "1,2", "--runs", "1", "--idle", "0.5",
        "--launch-runs", "1",
    )  # fmt: skip
    assert result["wsm"] == str(VENV / "bin" / "wsm")
    assert result["processes_left"] == []
    floors = result["floors"]
    assert floors["python_pass"]["median_ms"] > 0
    assert floors["python_import_repo"]["median_ms"] > 0
    assert floors["python_serving_stack"]["median_ms"] > floors["python_pass"]["median_ms"]
    assert floors["bare_uss_mb"] > 0
    for name in ("version", "status_no_manager", "list_1"):
        assert result["commands"][name]["median_ms"] > 0
    assert set(result["up"]) == {"1", "2"}
    for count, up in result["up"].items():
        assert up["states"] == {"ready": int(count)}
        assert 0 < up["health_answers_ms"] <= up["readyz_200_ms"]
        assert up["manager_rss_mb"] > 0 and up["location_uss_mb"] > 0
        assert up["cpu_to_ready_s"] > 0 and up["floor_cpu_s"] > 0
        assert up["manager_idle_cpu_pct"] >= 0
        assert up["livez"]["p99_ms"] > 0
        assert up["stop"]["exit_code"] == 0
        assert up["stop"]["processes_left"] == []
        assert up["stop"]["processes_seen"] >= 1 + int(count)  # the manager and its locations
    assert result["up"]["1"]["wsm_status_running"]["median_ms"] > 0
    assert result["launch"]["job_execute_command"]["median_ms"] > 0
    assert result["targets"]["wsm_version_ms"]["value"] is not None
    assert "wsm up, 1: spawn -> /readyz 200" in done.stdout


@pytest.mark.slow
def test_forkserver_both_loader_and_fork_latency_parts_run_and_leave_nothing(tmp_path):
    done, result = run_bench(
        tmp_path, "--only", "up,loader,fork-latency", "--forkserver", "both", "--sizes", "1",
        "--runs", "1", "--idle", "0.2", "--fork-latency", "3", "--loader-locations", "1",
        "--loader-python", sys.executable,
    )  # fmt: skip
    assert result["processes_left"] == []
    assert result["up"]["1"]["forkserver"] == "on" and result["up"]["1"]["fork_servers"] == 1
    assert result["up_no_forkserver"]["1"]["forkserver"] == "off"
    assert result["up_no_forkserver"]["1"]["fork_servers"] == 0
    assert result["loader"][sys.executable]["spawn_to_loaded_ms_median"] > 0
    assert result["fork_latency"]["fork_round_trip_ms_p50"] > 0
    assert "commands" not in result

"""The Dagster side of bench/daemon_bench.py: runs inside the throwaway Dagster venv.

`<venv>/bin/python bench/dagster_daemon.py --out-json FILE [...]` measures, with Dagster's
own tools (`dagster job execute`, `dagster-daemon run` with its default queued run
coordinator and run launcher, SQLite storage in a temporary DAGSTER_HOME):

- floor: a bare interpreter importing the repository file (which imports dagster);
- execute: `dagster job execute` of a one-op job, wall time and spawn -> the op's first line;
- sensor: a file the sensor watches appears (the trigger) -> the op's first line, and the
  RunRequest's creation inside the sensor function -> the op's first line;
- schedule: a `* * * * *` schedule's minute boundary -> the op's first line;
- burst: N RunRequests from one sensor tick -> all runs finished, the most running at once,
  and the peak summed RSS of the daemon's process tree (daemon, code server, runs).

Every time is `time.time()` written to a file by the process that saw it (the op at its
first line, the sensor function as it creates a RunRequest, this driver as it writes a
trigger). Each phase gets a fresh DAGSTER_HOME and daemon. Standard library plus dagster;
the result is one JSON object written to --out-json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import measure

REPO = """
import json, os, time
from pathlib import Path

import dagster as dg

OUT = Path(os.environ["BENCH_OUT"])
PHASE = os.environ.get("BENCH_PHASE", "")
BURST = int(os.environ.get("BENCH_BURST", "50"))


def _on(phase):
    return dg.DefaultSensorStatus.RUNNING if PHASE == phase else dg.DefaultSensorStatus.STOPPED


def _stamp(name, data):
    tmp = OUT / (name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, OUT / name)


@dg.op
def first_line(context):
    t = time.time()
    _stamp("run-" + context.run_id, {"t": t, "tags": dict(context.run.tags)})


@dg.job
def bench_job():
    first_line()


@dg.sensor(job=bench_job, minimum_interval_seconds=1, default_status=_on("sensor"))
def trigger_sensor(context):
    _stamp("alive", {"t": time.time()})
    for path in sorted(OUT.glob("trigger-*")):
        if path.name.endswith(".tmp") or (OUT / ("request-" + path.name)).exists():
            continue
        _stamp("request-" + path.name, {"t": time.time()})
        yield dg.RunRequest(run_key=path.name, tags={"bench_trigger": path.name})


@dg.sensor(job=bench_job, minimum_interval_seconds=1, default_status=_on("burst"))
def burst_sensor(context):
    if (OUT / "burst-requested").exists():
        return dg.SkipReason("done")
    _stamp("burst-requested", {"t": time.time()})
    return [dg.RunRequest(run_key="burst-%d" % i, tags={"bench_burst": str(i)}) for i in range(BURST)]


@dg.schedule(
    job=bench_job,
    cron_schedule="* * * * *",
    default_status=(
        dg.DefaultScheduleStatus.RUNNING if PHASE == "schedule" else dg.DefaultScheduleStatus.STOPPED
    ),
)
def every_minute(context):
    return dg.RunRequest(tags={"bench_tick": repr(context.scheduled_execution_time.timestamp())})


defs = dg.Definitions(jobs=[bench_job], sensors=[trigger_sensor, burst_sensor], schedules=[every_minute])
"""


def read_stamps(out: Path, prefix: str) -> Dict[str, Dict[str, Any]]:
    """Every `prefix*` stamp file in `out` (name -> its JSON), skipping half-written ones."""
    found = {}
    for path in out.glob(prefix + "*"):
        if path.name.endswith(".tmp"):
            continue
        try:
            found[path.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    return found


def wait_for(check, timeout_s: float, what: str, proc: Optional[subprocess.Popen] = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the Dagster process exited ({proc.returncode}) waiting for {what}")
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class Phase:
    """A fresh DAGSTER_HOME, output folder and repository for one measurement."""

    def __init__(self, root: Path, name: str, burst: int = 0) -> None:
        self.name = name
        self.dir = root / name
        self.home = self.dir / "home"
        self.out = self.dir / "out"
        self.home.mkdir(parents=True)
        self.out.mkdir()
        self.repo = self.dir / "bench_repo.py"
        self.repo.write_text(REPO)
        (self.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        (self.dir / "workspace.yaml").write_text(
            textwrap.dedent(
                f"""\
                load_from:
                  - python_file:
                      relative_path: {self.repo.name}
                      working_directory: {self.dir}
                      location_name: bench
                """
            )
        )
        self.env = measure.bench_env(
            DAGSTER_HOME=str(self.home),
            BENCH_OUT=str(self.out),
            BENCH_PHASE=name,
            BENCH_BURST=str(burst),
        )
        self.log = self.dir / "dagster.log"

    def runs(self) -> Dict[str, Dict[str, Any]]:
        return read_stamps(self.out, "run-")


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class Daemon:
    """`dagster-daemon run` for one phase; stopped with its whole tree."""

    def __init__(self, phase: Phase, children: measure.Children) -> None:
        self.phase = phase
        log = open(phase.log, "ab")
        self.started = time.time()
        self.proc = children.add(
            measure.spawn(
                [bin_path("dagster-daemon"), "run", "-w", str(phase.dir / "workspace.yaml")],
                cwd=str(phase.dir),
                env=phase.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        )
        log.close()

    def stop(self) -> None:
        pids = measure.process_tree(self.proc.pid)
        measure.stop(self.proc, grace_s=15.0)
        measure.kill_tree(pids[1:])  # what left the group: code server, runs


def floor(phase: Phase, count: int) -> Dict[str, float]:
    """A bare interpreter importing the repository (so dagster): the floor of every figure."""
    argv = measure.bare_import_argv(sys.executable, [str(phase.dir)], phase.repo.stem)
    samples = []
    for i in range(count + 1):  # one untimed round: .pyc files, page cache
        r = measure.measure_bare_import(argv, cwd=str(phase.dir), env=phase.env)
        if i:
            samples.append(r["seconds"] * 1000.0)
    return {"count": count, "median_ms": measure.median(samples), "min_ms": min(samples)}


def execute(phase: Phase, count: int, children: measure.Children) -> Dict[str, Any]:
    """`dagster job execute -f repo -j bench_job`, one untimed run first (it also creates
    the SQLite storage), then `count` timed ones."""
    argv = [bin_path("dagster"), "job", "execute", "-f", str(phase.repo), "-j", "bench_job"]
    wall, first = [], []
    for i in range(count + 1):
        before = set(phase.runs())
        log = open(phase.log, "ab")
        t0 = time.time()
        proc = children.add(
            measure.spawn(argv, cwd=str(phase.dir), env=phase.env, stdout=log, stderr=log)
        )
        log.close()
        proc.wait()
        t1 = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"dagster job execute failed ({proc.returncode}); see {phase.log}")
        new = [v for k, v in phase.runs().items() if k not in before]
        if i:
            wall.append((t1 - t0) * 1000.0)
            first.append((new[0]["t"] - t0) * 1000.0)
    return {
        "count": count,
        "wall_ms": measure.median(wall),
        "wall_all_ms": wall,
        "spawn_to_op_ms": measure.median(first),
    }


def sensor(phase: Phase, triggers: int, children: measure.Children) -> Dict[str, Any]:
    daemon = Daemon(phase, children)
    try:
        wait_for(
            lambda: (phase.out / "alive").exists(), 300, "the sensor's first tick", daemon.proc
        )
        trigger_ms, request_ms, tick_ms = [], [], []
        for i in range(triggers):
            name = f"trigger-{i:03d}"
            t = time.time()
            measure_path = phase.out / name
            (phase.out / (name + ".tmp")).write_text(json.dumps({"t": t}))
            os.replace(phase.out / (name + ".tmp"), measure_path)

            def started(name: str = name) -> Optional[Dict[str, Any]]:
                for run in phase.runs().values():
                    if run["tags"].get("bench_trigger") == name:
                        return run
                return None

            run = wait_for(started, 300, f"the run of {name}", daemon.proc)
            request = read_stamps(phase.out, "request-" + name)["request-" + name]
            trigger_ms.append((run["t"] - t) * 1000.0)
            request_ms.append((run["t"] - request["t"]) * 1000.0)
            tick_ms.append((request["t"] - t) * 1000.0)
            time.sleep(2.0)  # let that run finish, so runs do not overlap
    finally:
        daemon.stop()
    return {
        "triggers": triggers,
        "trigger_to_op_ms": measure.median(trigger_ms),
        "request_to_op_ms": measure.median(request_ms),
        "trigger_to_request_ms": measure.median(tick_ms),
        "trigger_to_op_all_ms": trigger_ms,
        "request_to_op_all_ms": request_ms,
    }


def schedule(phase: Phase, ticks: int, children: measure.Children) -> Dict[str, Any]:
    daemon = Daemon(phase, children)
    try:

        def enough() -> bool:
            return len(phase.runs()) >= ticks

        wait_for(enough, 60.0 * (ticks + 2) + 120, f"{ticks} scheduled runs", daemon.proc)
    finally:
        daemon.stop()
    late = sorted((r["t"] - float(r["tags"]["bench_tick"])) * 1000.0 for r in phase.runs().values())
    return {
        "ticks": len(late),
        "tick_to_op_median_ms": measure.median(late),
        "tick_to_op_p99_ms": measure.percentile(late, 99),
        "tick_to_op_all_ms": late,
    }


def burst(phase: Phase, requests: int, children: measure.Children) -> Dict[str, Any]:
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    os.environ["DAGSTER_HOME"] = str(phase.home)
    daemon = Daemon(phase, children)
    final = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
    try:
        with measure.PeakRss(daemon.proc.pid, interval_s=0.2) as rss:
            stamp = wait_for(
                lambda: read_stamps(phase.out, "burst-requested").get("burst-requested"),
                300,
                "the burst sensor's tick",
                daemon.proc,
            )
            instance = DagsterInstance.get()

            def all_done() -> bool:
                time.sleep(0.5)
                return instance.get_runs_count(RunsFilter(statuses=final)) >= requests

            wait_for(all_done, max(600.0, requests * 15.0), f"{requests} runs to end", daemon.proc)
        records = instance.get_run_records()
        instance.dispose()
    finally:
        daemon.stop()
    statuses: Dict[str, int] = {}
    spans = []
    for rec in records:
        status = rec.dagster_run.status.value
        statuses[status] = statuses.get(status, 0) + 1
        if rec.start_time and rec.end_time:
            spans.append((rec.start_time, rec.end_time))
    last_end = max(end for _, end in spans)
    done_s = last_end - stamp["t"]
    return {
        "requests": requests,
        "runs": len(records),
        "statuses": statuses,
        "all_done_s": done_s,
        "runs_per_minute": len(records) / done_s * 60.0,
        "max_running_at_once": max_overlap(spans),
        **rss.as_dict(),
    }


def max_overlap(spans: List[tuple]) -> int:
    """The most intervals [start, end) open at one instant."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure Dagster's daemon (bench driver).")
    parser.add_argument("--out-json", type=Path, required=True)
    parser.add_argument("--phases", default="execute,sensor,schedule,burst")
    parser.add_argument("--executes", type=int, default=3)
    parser.add_argument("--triggers", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=2)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--floor-runs", type=int, default=5)
    args = parser.parse_args()
    measure.sigterm_as_keyboard_interrupt()
    import dagster

    result: Dict[str, Any] = {"version": dagster.__version__, "python": sys.version.split()[0]}
    root = Path(tempfile.mkdtemp(prefix="wsm-daemon-bench-dagster-"))
    phases = args.phases.split(",")
    try:
        with measure.Children() as children:
            result["floor"] = floor(Phase(root, "floor"), args.floor_runs)
            print(f"  dagster floor: {result['floor']['median_ms']:.0f} ms", flush=True)
            for name in phases:
                t0 = time.monotonic()
                if name == "execute":
                    result[name] = execute(Phase(root, name), args.executes, children)
                elif name == "sensor":
                    result[name] = sensor(Phase(root, name), args.triggers, children)
                elif name == "schedule":
                    result[name] = schedule(Phase(root, name), args.ticks, children)
                elif name == "burst":
                    result[name] = burst(Phase(root, name, args.requests), args.requests, children)
                else:
                    raise SystemExit(f"unknown phase {name!r}")
                print(f"  dagster {name}: done in {time.monotonic() - t0:.0f} s", flush=True)
    except KeyboardInterrupt:
        sys.exit(130)  # every process it started is stopped by now
    except RuntimeError as exc:
        result["error"] = str(exc)
        for log in root.glob("*/dagster.log"):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"--- {log}\n" + "\n".join(tail), file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    args.out_json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()

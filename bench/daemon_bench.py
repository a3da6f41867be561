"""Issue-9 benchmark: schedules, sensors and runs, wsm and Dagster side by side in one run.

    python bench/daemon_bench.py                   # both; 15-20 minutes, most of it Dagster
    python bench/daemon_bench.py --quick           # fewer samples, one minute each; ~8 minutes
    python bench/daemon_bench.py --only wsm        # or --only dagster
    python bench/daemon_bench.py --minutes 5 --dagster-requests 50 --requests 200

Dagster (1.13.x, pip-installed once into $XDG_CACHE_HOME/wsm-bench/dagster-1.13-venv and
reused; driven by bench/dagster_daemon.py inside that venv): `dagster job execute` of a one-op
job; `dagster-daemon run` (its default queued run coordinator and run launcher, SQLite
storage in a temporary DAGSTER_HOME) for a sensor, a `* * * * *` schedule, and N
RunRequests from one sensor tick (all done, and the peak summed RSS of the daemon, code
server and runs).

wsm (the targets of issue 9), each against the floor: a bare interpreter (wsm's own, as the
location uses) starting and importing the location's code, measured in the same run:

| figure | target |
| --- | --- |
| sensor: RunRequest created -> first line of the job's function | <= 50 ms over the floor |
| schedule: tick time (the minute boundary) -> first line, p99 | <= 100 ms |
| `wsm job execute` of a trivial job, wall time | <= 150 ms over the floor |
| 200 RunRequests from one tick, `max_concurrent_runs: 10` | all SUCCESS; time, manager peak RSS |
| 1,000 schedules + 1,000 sensors (30 s) in 10 locations | manager steady CPU <= 5 % of a core |

How times are taken: every process writes `time.time()` to a file at the moment it sees
the event (the job or op at its first line, naming the file by its run; the sensor function
as it creates a RunRequest; this script as it writes a trigger file the sensor watches).
The schedule's tick time is the scheduled time the schedule function received (the minute
boundary), passed to the run as a tag. Sensors use `minimum_interval_seconds=1` on both
sides, so "trigger -> first line" includes up to a second of waiting for the next tick.

Each measurement gets its own workspace (or DAGSTER_HOME), its own `wsm up` (or daemon),
and private state, runtime and cache folders; everything started is stopped at the end
(also on Ctrl-C and errors). Output: a table, then one JSON line (`wsm`, `dagster`,
`targets`, `all_targets_met`, `not_measured`, `details`). Exit status 0 whether or not the
targets are met. A wsm figure whose feature is missing from this build is listed under
`not_measured` with the error, and the rest still runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dagster_location  # noqa: E402
import measure  # noqa: E402

DAGSTER_SPEC = "dagster==1.13.*"  # the version issue 9 measured (1.13.28)
DAGSTER_VENV = dagster_location.CACHE_ROOT / "dagster-1.13-venv"
SENSOR_INTERVAL_S = 1

#: figure -> (limit, over what): the targets of issue 9.
TARGETS: Dict[str, Tuple[float, str]] = {
    "sensor_request_to_first_line_over_floor_ms": (50.0, "max"),
    "schedule_tick_to_first_line_p99_ms": (100.0, "max"),
    "execute_wall_over_floor_ms": (150.0, "max"),
    "burst_all_success": (1.0, "min"),
    "instigators_manager_cpu_pct": (5.0, "max"),
}

WSM_REPO = """
import json, os, time
from pathlib import Path

from workspace_manager import RunRequest, SkipReason, job, schedule, sensor, repository

OUT = Path({out!r})
BURST = {burst}
PHASE = {phase!r}


def _stamp(name, data):
    tmp = OUT / (name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, OUT / name)


@job
def bench_job(context):
    t = time.time()
    _stamp("run-" + context.run_id, {{"t": t, "tags": dict(context.tags)}})


@sensor(job=bench_job, minimum_interval_seconds={interval})
def trigger_sensor(context):
    _stamp("alive", {{"t": time.time()}})
    for path in sorted(OUT.glob("trigger-*")):
        if path.name.endswith(".tmp") or (OUT / ("request-" + path.name)).exists():
            continue
        _stamp("request-" + path.name, {{"t": time.time()}})
        yield RunRequest(run_key=path.name, tags={{"bench_trigger": path.name}})


@sensor(job=bench_job, minimum_interval_seconds={interval})
def burst_sensor(context):
    if (OUT / "burst-requested").exists():
        return SkipReason("done")
    _stamp("burst-requested", {{"t": time.time()}})
    return [RunRequest(run_key="burst-%d" % i, tags={{"bench_burst": str(i)}}) for i in range(BURST)]


@schedule("* * * * *", job=bench_job)
def every_minute(context):
    return RunRequest(tags={{"bench_tick": repr(context.scheduled_execution_time.timestamp())}})


_BY_PHASE = {{"sensor": [trigger_sensor], "burst": [burst_sensor], "schedule": [every_minute]}}


@repository
def bench_repo():
    return [bench_job] + _BY_PHASE.get(PHASE, [])
"""

#: One of the 10 locations of the instigators measurement: jobs, 100 schedules (daily, at
#: spread-out times, so about one fires in a minute and it requests nothing) and 100 sensors
#: (every 30 s, requesting nothing): the manager's steady work is ticking, not running jobs.
MANY_REPO = """
from workspace_manager import SkipReason, job, schedule, sensor, repository

@job
def idle_job():
    pass

DEFS = [idle_job]

def _make(i):
    @schedule("{{}} {{}} * * *".format(i % 60, (i // 60 + {offset}) % 24), job=idle_job,
              name="sched_{loc}_%03d" % i)
    def _s(context):
        return SkipReason("bench")

    @sensor(job=idle_job, minimum_interval_seconds=30, name="sens_{loc}_%03d" % i)
    def _n(context):
        return SkipReason("bench")

    DEFS.extend([_s, _n])

for _i in range({count}):
    _make(_i)

@repository
def many_repo():
    return DEFS
"""


# -- helpers ---------------------------------------------------------------------------------


def wsm_bin() -> List[str]:
    exe = Path(sys.executable).parent / "wsm"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "workspace_manager.cli.main"]


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


def write_stamp(path: Path, t: float) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"t": t}))
    os.replace(tmp, path)


def wait_for(
    check: Callable[[], Any], timeout_s: float, what: str, alive: Callable[[], None]
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        alive()
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


class Workspace:
    """A folder with a workspace.yaml, its locations, private wsm folders and an out/ folder."""

    def __init__(self, root: Path, name: str) -> None:
        self.dir = root / name
        self.out = self.dir / "out"
        self.out.mkdir(parents=True)
        self.env = measure.bench_env()
        self.env.pop("PYTHONPATH", None)
        for kind in ("RUNTIME", "STATE", "CACHE"):
            self.env[f"WSM_{kind}_DIR"] = str(self.dir / f".wsm-{kind.lower()}")
        self.file = self.dir / "workspace.yaml"

    def write(self, locations: Dict[str, str], daemon: bool = True) -> None:
        """One location per name, its code the given source; with `daemon`, the workspace's
        `daemon: {default_status: running, max_concurrent_runs: 10}` of issue 9."""
        entries = []
        for name, source in locations.items():
            folder = self.dir / name
            folder.mkdir()
            (folder / f"{name}_repo.py").write_text(source)
            entries.append(
                {"python_file": {"relative_path": f"{name}/{name}_repo.py", "location_name": name}}
            )
        text: Dict[str, Any] = {"load_from": entries}
        if daemon:
            text["daemon"] = {"default_status": "running", "max_concurrent_runs": 10}
        self.file.write_text(json.dumps(text, indent=1))  # JSON is YAML

    def wsm(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*wsm_bin(), *args],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )

    def runs(self) -> Dict[str, Dict[str, Any]]:
        return read_stamps(self.out, "run-")

    def run_list(self) -> List[Dict[str, Any]]:
        """`wsm run list --json` (CONTRACT: a list, or {"items": [...]}); RuntimeError if not."""
        done = self.wsm("run", "list", "-w", str(self.file), "--limit", "100000", "--json")
        if done.returncode != 0:
            raise RuntimeError(f"wsm run list --json: {one_line(done.stderr or done.stdout)}")
        data = json.loads(done.stdout)
        return data["items"] if isinstance(data, dict) else data


class WsmUp:
    """`wsm up` in its own session, with every process it starts; `close()` stops them all."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.lines: List[str] = []
        self.pids: Set[int] = set()
        self.proc = subprocess.Popen(
            [*wsm_bin(), "up", "-w", str(ws.file), "--health", "127.0.0.1:0", "--quiet-output"],
            cwd=ws.dir,
            env=ws.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.port = wait_for(self._port, 60, "wsm up's health endpoint", self.alive)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def alive(self) -> None:
        if self.proc.poll() is not None:
            time.sleep(0.2)
            raise RuntimeError(
                f"wsm up exited ({self.proc.returncode}): {' | '.join(self.lines[-5:])}"
            )

    def _port(self) -> Optional[int]:
        for line in self.lines:
            m = re.search(r"health endpoint on http://[^:]+:(\d+)", line)
            if m:
                return int(m.group(1))
        return None

    def status(self) -> Dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/status")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 300.0) -> None:
        def ready() -> bool:
            self.track()
            locs = self.status()["locations"].values()
            return bool(locs) and all(v["state"] == "ready" for v in locs)

        wait_for(ready, timeout, "every location to be ready", self.alive)

    def track(self) -> None:
        self.pids.update(measure.process_tree(self.proc.pid)[1:])

    def close(self) -> List[int]:
        """SIGTERM `wsm up`, wait; then SIGKILL whatever it left. The pids that were left."""
        self.track()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        left = measure.kill_tree(sorted(self.pids | {self.proc.pid}))
        measure.kill_group(self.proc)
        return left


# -- wsm: each measurement -------------------------------------------------------------------


def bench_repo(ws: Workspace, phase: str, burst: int = 0) -> str:
    return WSM_REPO.format(out=str(ws.out), burst=burst, phase=phase, interval=SENSOR_INTERVAL_S)


def wsm_floor(root: Path, count: int) -> Dict[str, Any]:
    """A bare interpreter (the one the location runs under: wsm's own) importing the
    location's code, which imports the SDK: what any run must pay at least."""
    ws = Workspace(root, "floor")
    ws.write({"loc": bench_repo(ws, "floor")}, daemon=False)
    argv = measure.bare_import_argv(sys.executable, [str(ws.dir / "loc")], "loc_repo")
    samples = []
    for i in range(count + 1):  # one untimed round: .pyc files, page cache
        r = measure.measure_bare_import(argv, cwd=str(ws.dir / "loc"), env=ws.env)
        if i:
            samples.append(r["seconds"] * 1000.0)
    return {"count": count, "median_ms": measure.median(samples), "min_ms": min(samples)}


def wsm_execute(root: Path, count: int) -> Dict[str, Any]:
    """`wsm job execute -w WS bench_job`: one untimed run (creates the database), then
    `count` timed ones: wall time, and spawn -> the job's first line."""
    ws = Workspace(root, "execute")
    ws.write({"loc": bench_repo(ws, "execute")}, daemon=False)
    wall, first = [], []
    for i in range(count + 1):
        before = set(ws.runs())
        t0 = time.time()
        done = ws.wsm("job", "execute", "-w", str(ws.file), "bench_job")
        t1 = time.time()
        if done.returncode != 0:
            raise RuntimeError(
                f"wsm job execute exited {done.returncode}: {one_line(done.stderr or done.stdout)}"
            )
        new = [v for k, v in ws.runs().items() if k not in before]
        if i:
            wall.append((t1 - t0) * 1000.0)
            if new:
                first.append((new[0]["t"] - t0) * 1000.0)
    return {
        "count": count,
        "wall_ms": measure.median(wall),
        "wall_all_ms": wall,
        "spawn_to_first_line_ms": measure.median(first) if first else None,
    }


def wsm_sensor(root: Path, triggers: int) -> Dict[str, Any]:
    ws = Workspace(root, "sensor")
    ws.write({"loc": bench_repo(ws, "sensor")})
    up = WsmUp(ws)
    try:
        up.wait_ready()
        wait_for(lambda: (ws.out / "alive").exists(), 120, "the sensor's first tick", up.alive)
        trigger_ms, request_ms = [], []
        for i in range(triggers):
            name = f"trigger-{i:03d}"
            # spread over the sensor's interval, so triggers do not all land at one phase of it
            time.sleep(0.3 + (i * 0.37) % SENSOR_INTERVAL_S)
            t = time.time()
            write_stamp(ws.out / name, t)

            def started(name: str = name) -> Optional[Dict[str, Any]]:
                for run in ws.runs().values():
                    if run["tags"].get("bench_trigger") == name:
                        return run
                return None

            run = wait_for(started, 60, f"the run of {name}", up.alive)
            request = read_stamps(ws.out, "request-" + name)["request-" + name]
            trigger_ms.append((run["t"] - t) * 1000.0)
            request_ms.append((run["t"] - request["t"]) * 1000.0)
    finally:
        left = up.close()
    return {
        "triggers": triggers,
        "request_to_first_line_ms": measure.median(request_ms),
        "request_to_first_line_max_ms": max(request_ms),
        "trigger_to_first_line_ms": measure.median(trigger_ms),
        "request_to_first_line_all_ms": request_ms,
        "trigger_to_first_line_all_ms": trigger_ms,
        "left_behind": left,
    }


def wsm_schedule(root: Path, ticks: int) -> Dict[str, Any]:
    ws = Workspace(root, "schedule")
    ws.write({"loc": bench_repo(ws, "schedule")})
    up = WsmUp(ws)
    try:
        up.wait_ready()
        # a boundary within 2 s of the manager being ready measures its start, not its loop
        steady = time.time() + 2.0

        def measured() -> List[float]:
            runs = ws.runs().values()
            return [
                r["t"] - float(r["tags"]["bench_tick"])
                for r in runs
                if float(r["tags"]["bench_tick"]) >= steady
            ]

        wait_for(
            lambda: len(measured()) >= ticks,
            60.0 * (ticks + 1) + 30,
            f"{ticks} scheduled runs",
            up.alive,
        )
    finally:
        left = up.close()
    late = sorted(x * 1000.0 for x in measured())
    return {
        "breakdown_ms": schedule_breakdown(ws, steady),
        "ticks": len(late),
        "ticks_skipped_at_start": len(ws.runs()) - len(late),
        "tick_to_first_line_median_ms": measure.median(late),
        "tick_to_first_line_p99_ms": measure.percentile(late, 99),
        "tick_to_first_line_all_ms": late,
        "left_behind": left,
    }


def schedule_breakdown(ws: Workspace, steady: float) -> List[Dict[str, Any]]:
    """Where each measured schedule run's latency went, in ms after its tick time, from the
    run database (read after the manager stopped) and the job's stamp: the daemon woke
    (the tick's started_at), the location answered evaluate_schedule (the tick's ended_at),
    the run was stored QUEUED (created_at), the coordinator began its start (start_time,
    STARTING: just before the plan and the spawn), the job's first line."""
    import sqlite3

    found = list(Path(ws.env["WSM_STATE_DIR"]).glob("**/runs.db"))
    if len(found) != 1:
        return [{"error": f"expected one runs.db, found {len(found)}"}]
    stamps = ws.runs()
    out: List[Dict[str, Any]] = []
    db = sqlite3.connect(f"file:{found[0]}?mode=ro", uri=True)
    try:
        for run_id, created, start, origin in db.execute(
            "SELECT run_id, created_at, start_time, origin FROM runs"
        ):
            stamp = stamps.get("run-" + run_id)
            tick_id = json.loads(origin).get("tick_id")
            row = db.execute(
                "SELECT tick_time, started_at, ended_at FROM ticks WHERE tick_id = ?", (tick_id,)
            ).fetchone()
            if stamp is None or row is None or row[0] < steady:
                continue
            tick_time, woke, answered = row

            def ms(t: Optional[float], tick_time: float = tick_time) -> Optional[float]:
                return None if t is None else round((t - tick_time) * 1000.0, 1)

            out.append(
                {
                    "woke": ms(woke),
                    "evaluated": ms(answered),
                    "queued": ms(created),
                    "starting": ms(start),
                    "first_line": ms(stamp["t"]),
                }
            )
    except (sqlite3.Error, KeyError, ValueError) as exc:
        return [{"error": f"reading runs.db: {exc}"}]
    finally:
        db.close()
    return out


def wsm_burst(root: Path, requests: int) -> Dict[str, Any]:
    ws = Workspace(root, "burst")
    ws.write({"loc": bench_repo(ws, "burst", burst=requests)})
    up = WsmUp(ws)
    note = None
    try:
        with measure.PeakRss(up.proc.pid, interval_s=0.1) as rss:
            stamp = wait_for(
                lambda: read_stamps(ws.out, "burst-requested").get("burst-requested"),
                120,
                "the burst sensor's tick",
                up.alive,
            )
            final = {"SUCCESS", "FAILURE", "CANCELED"}
            records: List[Dict[str, Any]] = []

            def all_done() -> bool:
                nonlocal records
                time.sleep(0.5)
                records = ws.run_list()
                return sum(r["status"] in final for r in records) >= requests

            try:
                wait_for(all_done, max(300.0, requests * 2.0), f"{requests} runs to end", up.alive)
            except RuntimeError as exc:
                if "run list" not in str(exc):
                    raise
                # no run list yet: only when every job started can be seen, from the stamps
                note = f"{exc}; figure is the last job's first line, not the last run's end"
                wait_for(
                    lambda: len(ws.runs()) >= requests, 600, "every job's first line", up.alive
                )
        up.track()
    finally:
        left = up.close()
    result: Dict[str, Any] = {"requests": requests, "left_behind": left, **rss.as_dict()}
    if note:
        result["note"] = note
        result["all_started_s"] = max(r["t"] for r in ws.runs().values()) - stamp["t"]
        return result
    statuses: Dict[str, int] = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    spans = [
        (r["started_at"] or r["start_time"], r["ended_at"])
        for r in records
        if (r.get("started_at") or r.get("start_time")) and r.get("ended_at")
    ]
    last_end = max(r["ended_at"] for r in records if r.get("ended_at"))
    result.update(
        {
            "runs": len(records),
            "statuses": statuses,
            "all_success": statuses.get("SUCCESS", 0) == requests == len(records),
            "all_done_s": last_end - stamp["t"],
            "runs_per_minute": len(records) / (last_end - stamp["t"]) * 60.0,
            "max_running_at_once": max_overlap(spans),
        }
    )
    return result


def max_overlap(spans: List[Tuple[float, float]]) -> int:
    """The most intervals [start, end) open at one instant."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def wsm_instigators(
    root: Path, locations: int, per_location: int, settle_s: float, window_s: float
) -> Dict[str, Any]:
    """`locations` locations of `per_location` schedules and as many 30 s sensors each; the
    manager's CPU (its own process, all threads) over `window_s` once every sensor has
    ticked once and `settle_s` more have passed; the locations' CPU alongside.

    The sensors may all tick in one burst every 30 s (they start together), so the window
    is a whole number of intervals, or it could fall between two bursts and see nothing."""
    import psutil

    ws = Workspace(root, "instigators")
    ws.write(
        {
            f"l{i:02d}": MANY_REPO.format(loc=f"l{i:02d}", count=per_location, offset=i)
            for i in range(locations)
        }
    )
    up = WsmUp(ws)
    try:
        t0 = time.monotonic()
        up.wait_ready()
        ready_s = time.monotonic() - t0
        expected = locations * per_location

        def all_ticked() -> bool:
            time.sleep(1.0)
            done = ws.wsm("sensor", "list", "-w", str(ws.file), "--json")
            if done.returncode != 0:
                raise RuntimeError(
                    f"wsm sensor list --json: {one_line(done.stderr or done.stdout)}"
                )
            data = json.loads(done.stdout)
            items = data["items"] if isinstance(data, dict) else data
            running = [s for s in items if s.get("status") == "RUNNING"]
            return len(running) >= expected and all(s.get("last_tick") for s in running)

        wait_for(all_ticked, 180, f"all {expected} sensors to tick once", up.alive)
        time.sleep(settle_s)
        window_s = max(1, round(window_s / 30.0)) * 30.0
        up.track()
        manager = psutil.Process(up.proc.pid)
        kids = [psutil.Process(p) for p in measure.process_tree(up.proc.pid)[1:]]

        def cpu(procs: List[psutil.Process]) -> float:
            total = 0.0
            for p in procs:
                try:
                    c = p.cpu_times()
                    total += c.user + c.system
                except psutil.Error:
                    pass
            return total

        w0, m0, k0, t0 = time.monotonic(), cpu([manager]), cpu(kids), time.time()
        time.sleep(window_s)
        w1, m1, k1, t1 = time.monotonic(), cpu([manager]), cpu(kids), time.time()
        rss_mb = manager.memory_info().rss / 2**20
    finally:
        left = up.close()
    return {
        "ticks_in_window": ticks_between(ws, t0, t1),
        "locations": locations,
        "schedules": expected,
        "sensors": expected,
        "ready_s": ready_s,
        "window_s": w1 - w0,
        "manager_cpu_pct": (m1 - m0) / (w1 - w0) * 100.0,
        "locations_cpu_pct": (k1 - k0) / (w1 - w0) * 100.0,
        "manager_rss_mb": rss_mb,
        "left_behind": left,
    }


def ticks_between(ws: Workspace, t0: float, t1: float) -> Dict[str, Any]:
    """Ticks started in [t0, t1), by kind and result, read from the run database after the
    manager stopped (proof the daemon was ticking while its CPU was measured). The table
    is storage/schema.py's; an error is returned as such."""
    import sqlite3

    found = list(Path(ws.env["WSM_STATE_DIR"]).glob("**/runs.db"))
    if len(found) != 1:
        return {"error": f"expected one runs.db, found {len(found)}"}
    try:
        db = sqlite3.connect(f"file:{found[0]}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT kind, status, COUNT(*) FROM ticks"
                " WHERE started_at >= ? AND started_at < ? GROUP BY kind, status",
                (t0, t1),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return {"error": f"reading ticks: {exc}"}
    return {f"{kind}.{status}": count for kind, status, count in rows}


# -- the drivers -----------------------------------------------------------------------------


def run_wsm(root: Path, n: Dict[str, Any], log: Callable[[str], None]) -> Dict[str, Any]:
    """Every wsm measurement; a missing feature becomes an "error" entry, the rest goes on."""
    out: Dict[str, Any] = {"python": sys.version.split()[0]}
    steps: List[Tuple[str, Callable[[], Dict[str, Any]]]] = [
        ("floor", lambda: wsm_floor(root, n["floor_runs"])),
        ("execute", lambda: wsm_execute(root, n["executes"])),
        ("sensor", lambda: wsm_sensor(root, n["triggers"])),
        ("schedule", lambda: wsm_schedule(root, n["minutes"])),
        ("burst", lambda: wsm_burst(root, n["requests"])),
        (
            "instigators",
            lambda: wsm_instigators(
                root, n["locations"], n["per_location"], n["settle_s"], n["window_s"]
            ),
        ),
    ]
    for name, step in steps:
        if name not in n["phases"] and name != "floor":
            continue
        t0 = time.monotonic()
        try:
            out[name] = step()
            log(f"  wsm {name}: done in {time.monotonic() - t0:.0f} s")
        except (RuntimeError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"  wsm {name}: not measured: {exc}")
    return out


def run_dagster(
    args: argparse.Namespace, n: Dict[str, Any], log: Callable[[str], None]
) -> Dict[str, Any]:
    python = dagster_location.ensure_venv(args.dagster_venv, log=log, spec=DAGSTER_SPEC)
    if python is None:
        return {"error": "dagster could not be installed"}
    log(f"measuring dagster ({python}) ...")
    with tempfile.TemporaryDirectory(prefix="wsm-daemon-bench-") as tmp:
        out_json = Path(tmp) / "dagster.json"
        argv = [
            str(python),
            str(Path(__file__).resolve().parent / "dagster_daemon.py"),
            "--out-json",
            str(out_json),
            "--phases",
            ",".join(p for p in n["phases"] if p in ("execute", "sensor", "schedule", "burst")),
            "--executes",
            str(n["dagster_executes"]),
            "--triggers",
            str(n["dagster_triggers"]),
            "--ticks",
            str(n["minutes"]),
            "--requests",
            str(n["dagster_requests"]),
        ]
        proc = measure.spawn(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr)  # progress
        try:
            proc.wait()
        finally:
            measure.stop(proc, grace_s=60.0)  # time for it to stop its daemons
        if not out_json.exists():
            return {"error": f"the Dagster driver failed with status {proc.returncode}"}
        return json.loads(out_json.read_text())


def counts(args: argparse.Namespace) -> Dict[str, Any]:
    n: Dict[str, Any] = {
        "phases": args.phases.split(","),
        "floor_runs": 5,
        "executes": 10,
        "triggers": 20,
        "minutes": args.minutes or (1 if args.quick else 2),
        "requests": args.requests,
        "locations": 10,
        "per_location": 100,
        "settle_s": 10.0,
        "window_s": 60.0,
        "dagster_executes": 3,
        "dagster_triggers": 3,
        "dagster_requests": args.dagster_requests or (10 if args.quick else 50),
    }
    if args.quick:
        n.update(executes=3, triggers=5, window_s=30.0, settle_s=5.0, dagster_executes=1)
        n.update(dagster_triggers=1)
    return n


def get(side: Dict[str, Any], phase: str, key: str) -> Optional[float]:
    value = side.get(phase, {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def flatten(side: Dict[str, Any], dagster: bool) -> Dict[str, Optional[float]]:
    """The headline figures of one side (the same names for both where they mean the same)."""
    first_line = "spawn_to_op_ms" if dagster else "spawn_to_first_line_ms"
    req = "request_to_op_ms" if dagster else "request_to_first_line_ms"
    trig = "trigger_to_op_ms" if dagster else "trigger_to_first_line_ms"
    sched = "tick_to_op_" if dagster else "tick_to_first_line_"
    floor = get(side, "floor", "median_ms")
    flat: Dict[str, Optional[float]] = {
        "floor_ms": floor,
        "execute_wall_ms": get(side, "execute", "wall_ms"),
        "execute_spawn_to_first_line_ms": get(side, "execute", first_line),
        "sensor_request_to_first_line_ms": get(side, "sensor", req),
        "sensor_trigger_to_first_line_ms": get(side, "sensor", trig),
        "schedule_tick_to_first_line_median_ms": get(side, "schedule", sched + "median_ms"),
        "schedule_tick_to_first_line_p99_ms": get(side, "schedule", sched + "p99_ms"),
        "schedule_ticks": get(side, "schedule", "ticks"),
        "burst_requests": get(side, "burst", "requests"),
        "burst_all_done_s": get(side, "burst", "all_done_s"),
        "burst_runs_per_minute": get(side, "burst", "runs_per_minute"),
        "burst_max_running_at_once": get(side, "burst", "max_running_at_once"),
        "burst_peak_tree_rss_mb": get(side, "burst", "peak_tree_mb"),
        "burst_peak_manager_rss_mb": None if dagster else get(side, "burst", "peak_root_mb"),
        "burst_peak_daemon_rss_mb": get(side, "burst", "peak_root_mb") if dagster else None,
        "instigators_manager_cpu_pct": get(side, "instigators", "manager_cpu_pct"),
        "instigators_locations_cpu_pct": get(side, "instigators", "locations_cpu_pct"),
    }
    if dagster:
        statuses = side.get("burst", {}).get("statuses")
        ok = statuses is not None and statuses.get("SUCCESS") == side["burst"]["requests"]
        flat["burst_all_success"] = float(ok) if statuses is not None else None
    else:
        ok = side.get("burst", {}).get("all_success")
        flat["burst_all_success"] = float(ok) if ok is not None else None
    for key in ("execute_wall", "sensor_request_to_first_line", "execute_spawn_to_first_line"):
        value = flat[f"{key}_ms"]
        flat[f"{key}_over_floor_ms"] = value - floor if value is not None and floor else None
    return flat


ROWS: List[Tuple[str, str, str]] = [
    ("floor_ms", "floor: interpreter + import of the code (ms)", "{:.0f}"),
    ("execute_wall_ms", "job execute, wall (ms)", "{:.0f}"),
    ("execute_wall_over_floor_ms", "  over the floor (ms)", "{:.0f}"),
    ("execute_spawn_to_first_line_ms", "  spawn -> first line (ms)", "{:.0f}"),
    ("sensor_request_to_first_line_ms", "sensor RunRequest -> first line (ms)", "{:.0f}"),
    ("sensor_request_to_first_line_over_floor_ms", "  over the floor (ms)", "{:.0f}"),
    ("sensor_trigger_to_first_line_ms", "sensor trigger -> first line (ms)", "{:.0f}"),
    ("schedule_tick_to_first_line_median_ms", "schedule tick -> first line, median (ms)", "{:.0f}"),
    ("schedule_tick_to_first_line_p99_ms", "schedule tick -> first line, p99 (ms)", "{:.0f}"),
    ("schedule_ticks", "  ticks measured", "{:.0f}"),
    ("burst_requests", "burst: RunRequests from one tick", "{:.0f}"),
    ("burst_all_success", "  all SUCCESS (1 = yes)", "{:.0f}"),
    ("burst_all_done_s", "  all done after (s)", "{:.1f}"),
    ("burst_runs_per_minute", "  runs a minute", "{:.0f}"),
    ("burst_max_running_at_once", "  most running at once", "{:.0f}"),
    ("burst_peak_manager_rss_mb", "  peak RSS, wsm manager (MB)", "{:.0f}"),
    ("burst_peak_daemon_rss_mb", "  peak RSS, dagster-daemon alone (MB)", "{:.0f}"),
    ("burst_peak_tree_rss_mb", "  peak RSS, whole tree summed (MB)", "{:.0f}"),
    ("instigators_manager_cpu_pct", "2,000 instigators: manager CPU (% core)", "{:.1f}"),
    ("instigators_locations_cpu_pct", "  locations' CPU (% core)", "{:.1f}"),
]


def verdicts(ours: Dict[str, Optional[float]]) -> Dict[str, Optional[bool]]:
    result: Dict[str, Optional[bool]] = {}
    for name, (limit, kind) in TARGETS.items():
        value = ours.get(name)
        result[name] = (
            None if value is None else (value <= limit if kind == "max" else value >= limit)
        )
    return result


def table(
    ours: Dict[str, Optional[float]],
    theirs: Dict[str, Optional[float]],
    verdict: Dict[str, Optional[bool]],
) -> str:
    def fmt(f: str, value: Optional[float]) -> str:
        return "-" if value is None else f.format(value)

    header = f"{'figure':<46} {'wsm':>9} {'target':>9} {'':4} {'dagster':>9}"
    lines = [header, "-" * len(header)]
    for key, label, f in ROWS:
        target, mark = "", ""
        if key in TARGETS:
            limit, kind = TARGETS[key]
            target = ("<= " if kind == "max" else ">= ") + f"{limit:g}"
            mark = {True: "ok", False: "MISS", None: "n/a"}[verdict[key]]
        lines.append(
            f"{label:<46} {fmt(f, ours.get(key)):>9} {target:>9} {mark:4} "
            f"{fmt(f, theirs.get(key)):>9}"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("wsm", "dagster"), help="measure one side only")
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter windows")
    parser.add_argument(
        "--minutes",
        type=int,
        help="minute boundaries of the schedule measured, each side (2; 1 with --quick)",
    )
    parser.add_argument("--requests", type=int, default=200, help="wsm's burst (200)")
    parser.add_argument(
        "--dagster-requests",
        type=int,
        help="Dagster's burst (50, as issue 9 measured; 10 with --quick)",
    )
    parser.add_argument(
        "--phases",
        default="execute,sensor,schedule,burst,instigators",
        help="which measurements (comma-separated; instigators is wsm only)",
    )
    parser.add_argument("--dagster-venv", type=Path, default=DAGSTER_VENV)
    args = parser.parse_args(argv)
    measure.sigterm_as_keyboard_interrupt()
    n = counts(args)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    load_start = os.getloadavg()[0]
    if load_start > 0.5:
        log(f"note: load average {load_start:.2f} before start; figures will be noisy")
    wsm: Dict[str, Any] = {}
    dagster: Dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="wsm-daemon-bench-"))
    try:
        if args.only != "wsm":
            dagster = run_dagster(args, n, log)
        if args.only != "dagster":
            log(f"measuring wsm ({sys.executable}) ...")
            wsm = run_wsm(root, n, log)
    except KeyboardInterrupt:
        log("interrupted; every started process was stopped")
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ours = flatten(wsm, dagster=False)
    theirs = flatten(dagster, dagster=True)
    verdict = verdicts(ours)
    print()
    print(
        f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}"
        + (f"; dagster {dagster['version']}" if dagster.get("version") else "")
        + f"; load {load_start:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    print(table(ours, theirs, verdict))
    not_measured = {
        f"{side}.{phase}": value["error"]
        for side, data in (("wsm", wsm), ("dagster", dagster))
        for phase, value in data.items()
        if isinstance(value, dict) and "error" in value
    }
    if dagster.get("error"):
        not_measured["dagster"] = dagster["error"]
    for key, error in not_measured.items():
        print(f"not measured: {key}: {error}")
    summary = {
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "loadavg_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "dagster_version": dagster.get("version"),
        "wsm": ours,
        "dagster": theirs,
        "targets": verdict,
        "all_targets_met": all(v is True for v in verdict.values()),
        "not_measured": not_measured,
        "details": {"wsm": wsm, "dagster": dagster, "counts": n},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue-11 benchmark: how far wsm's start-up is from what the interpreter allows, beside Dagster.

    python bench/startup_bench.py                 # 1, 10, 100 locations, 30 s idle, Dagster: ~5 min
    python bench/startup_bench.py --quick         # 1 and 10 locations, 2 s idle, wsm only: ~20-40 s
    python bench/startup_bench.py --thousand      # adds 1,000 locations (~10 GB of memory today)
    python bench/startup_bench.py --wsm OTHER_VENV/bin/wsm   # measure another install (or OTHER_VENV)
    python bench/startup_bench.py --no-dagster    # wsm only
    python bench/startup_bench.py --only up --sizes 1,100 --forkserver both   # spawn vs fork
    python bench/startup_bench.py --only launch --wsm AFTER --compare BEFORE  # two builds' launch
    python bench/startup_bench.py --only loader,fork-latency --fork-latency 100

The wsm measured is, by default, the `wsm` beside the running interpreter; `--wsm` names
another one (its executable, or the virtualenv holding it), so a build before and after a
change, or an installed wheel, can be compared. Every process of that install runs on the
interpreter its `wsm` script runs on (read from the virtualenv or the script's first line);
each figure's floor is measured on that interpreter in the same run.

What it measures (medians of wall time unless said; nearest-rank percentiles):

- floors: `python -c pass` (an interpreter's start), and a bare interpreter that imports the
  trivial location's code (`import trivial_repo`, which imports the SDK through a folder
  holding only a `workspace_manager` symlink, as a location does) and reports it on stdout;
  its unique memory (USS, from /proc/PID/smaps_rollup) once it has.
- commands: `wsm --version`, `wsm status` with no manager (exit 3) and with one running (one
  location), `wsm list` of one location (it starts and loads that location). Each sample's
  floor is taken just before it, under the same load: `python -c pass` (for `wsm list`, that
  and then the bare import); *over floor* is the median of the paired differences.
- the floor of `wsm up` with N locations: N bare imports started at once, until all have
  exited, measured just before that `wsm up`: wall time, and the CPU seconds they used. On
  a loaded machine the CPU figures (`wsm up`'s: the manager's and every location's CPU when
  `/readyz` first says 200) compare better than wall times.
- `wsm up` with N trivial locations (N = 1, 10, 100; 1,000 with `--thousand`), each
  workspace validated once before (`wsm validate`: a restart's warm start, whose
  validation is cached by content and imports no jsonschema), health on a port picked here: spawn -> the health endpoint's first answer, and spawn -> `/readyz` 200
  (every location ready: the all-ready time; polled on a new connection every 5 ms, 20 ms
  above 10 locations, 50 ms above 100, as each answer costs the manager); the
  manager's RSS and USS once ready and after the idle window, its open fds; each location's
  USS (median of up to 50) and that over the bare interpreter's; the manager's CPU over an
  idle window (`--idle`, 30 s; 2 s with `--quick`) as % of one core, and the locations' sum;
  `/livez` round trips on one open keep-alive socket, p50 / p99; then SIGTERM (as Ctrl-C):
  the time to exit, and every process the run saw (the manager, its descendants, each
  location's pid from /status) checked gone; a survivor is killed and reported in
  `processes_left` (the bench's exit status is then 1).
  Per size too: the manager's own CPU to all-ready, one `/status` answer's time, the median
  of the manager's own "ready ... in N ms" lines, each location's CPU to ready and PSS, the
  fork servers (count, USS). `--forkserver on|off|both` sets WSM_FORKSERVER; `both` runs
  each size without fork servers, then with them (`up_no_forkserver` beside `up`).
- run launch latency: bench/run_launch_bench.py run on the measured install's interpreter
  (`--launch-runs`, 5; 0 skips it), from a copy outside this checkout so that all of it,
  the client it talks to the manager with included, is the measured install's. With
  `--compare OTHER` (repeatable), the installs are measured in turn, `--launch-rounds`
  times (A, B, A, B: the same load for each); per install, each figure's median of the
  rounds' medians (`launch_compare`).
- `--loader`: the loader side alone, per interpreter (`--loader-python`), with the measured
  install's harness and SDK: the SDK's and the trivial repository's import (`-X
  importtime`), a loader's spawn -> `loaded`, the USS of loaders running at once over a
  bare interpreter that imported the same repository. `--fork-latency N`: one fork
  server's start, N fork requests' round trip and its CPU per fork. `--only PARTS` picks
  parts (commands, up, launch, dagster, loader, fork-latency).
- Dagster (1.13, `dagster-webserver` in a throwaway venv, `$XDG_CACHE_HOME/wsm-bench/
  dagster-webserver-1.13-venv`, installed once on first use): `dagster --version`, and its
  webserver on the same workspace shape (one trivial `@job` of one `@op` per location, as
  `python_file` entries): spawn -> every location LOADED in its GraphQL `workspaceOrError`
  (polled every 50 ms), RSS of the webserver and of its whole tree. Measured with 1 and 10
  locations (`--dagster-sizes`); 100 and 1,000 are *extrapolated* linearly from those and
  marked so. Dagster is never a dependency of wsm. `--quick` leaves Dagster out (its
  webserver alone takes 10-30 s a location on a loaded 2-core machine) unless
  `--dagster-sizes` is given.

The machine these figures are taken on is usually shared (2 cores, other test runs): the
JSON records the load average at the start and the end; figures are indicative, compare
runs taken together. Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import measure  # noqa: E402

DAGSTER_VENV = "dagster-webserver-1.13-venv"
DAGSTER_SPEC = "dagster-webserver>=1.13,<1.14"

TRIVIAL_WSM = measure.TRIVIAL_WSM_REPO

TRIVIAL_DAGSTER = """\
from dagster import Definitions, job, op


@op
def noop_op():
    pass


@job
def noop():
    noop_op()


defs = Definitions(jobs=[noop])
"""

#: What the manager cannot answer `/readyz` without: its event loop and the web stack it
#: serves HTTP with (uvicorn's httptools protocol, Starlette), imported by a bare interpreter.
#: `wsm up`'s one-location time is compared with this floor too.
SERVING_STACK = (
    "import asyncio, uvicorn.protocols.http.httptools_impl, starlette.applications, "
    "starlette.routing"
)

TARGETS = {
    "wsm_version_ms": 60,
    "wsm_status_ms": 60,
    "up_1_readyz_ms": 150,
    "up_100_readyz_ms": 1500,
    "up_100_manager_rss_mb": 60,
    "up_100_location_uss_over_floor_mb": 4,
    "up_100_idle_cpu_pct": 0.5,
    "up_1000_livez_p99_ms": 5,
}


# -- the install under test ----------------------------------------------------------------------


class Target:
    """A `wsm` executable and the interpreter its script runs on."""

    def __init__(self, wsm: Path, python: Path) -> None:
        self.wsm = wsm
        self.python = python
        self.version = ""
        self.package_dir = ""

    @classmethod
    def resolve(cls, given: Optional[str]) -> Target:
        """From `--wsm` (an executable, a virtualenv, or None for this interpreter's).

        Raises SystemExit with one line when no `wsm` is there.
        """
        if given is None:
            wsm = Path(sys.executable).parent / "wsm"
        else:
            wsm = Path(given).expanduser()
            if wsm.is_dir():
                wsm = wsm / "bin" / "wsm" if (wsm / "bin" / "wsm").exists() else wsm / "wsm"
        if not wsm.is_file() or not os.access(wsm, os.X_OK):
            raise SystemExit(f"startup_bench: no wsm executable at {wsm}")
        python = wsm.parent / "python"
        if not python.exists():  # an installed script: its shebang names the interpreter
            first = wsm.read_bytes().split(b"\n", 1)[0]
            if not first.startswith(b"#!"):
                raise SystemExit(f"startup_bench: cannot tell which python runs {wsm}")
            python = Path(first[2:].decode().strip().split()[0])
        target = cls(wsm.absolute(), python.absolute())
        probe = subprocess.run(
            [
                str(target.python),
                "-c",
                "import os, workspace_manager as w; print(os.path.dirname(os.path.realpath(w.__file__)))",
            ],
            capture_output=True,
            text=True,
            cwd="/",  # `-c` puts the working folder first on sys.path: not a checkout's
        )
        if probe.returncode != 0:
            raise SystemExit(f"startup_bench: {target.python} cannot import workspace_manager")
        target.package_dir = probe.stdout.strip()
        version = subprocess.run([str(target.wsm), "--version"], capture_output=True, text=True)
        target.version = (version.stdout or version.stderr).strip()
        return target


def bench_env(root: Path) -> Dict[str, str]:
    """This environment with private wsm folders; warm bytecode caches (see bench/README.md)."""
    env = measure.bench_env()
    env.pop("PYTHONPATH", None)
    for name in ("RUNTIME", "STATE", "CACHE"):
        env[f"WSM_{name}_DIR"] = str(root / f".wsm-{name.lower()}")
    return env


def write_workspace(root: Path, count: int, source: str) -> Path:
    """`root/workspace.yaml` with `count` python_file locations `loc000...`, each its own folder."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["load_from:"]
    for i in range(count):
        name = f"loc{i:03d}"
        (root / name).mkdir(exist_ok=True)
        (root / name / "trivial_repo.py").write_text(source)
        lines += [
            "  - python_file:",
            f"      relative_path: {name}/trivial_repo.py",
            f"      location_name: {name}",
            f"      working_directory: {name}",
        ]
    workspace = root / "workspace.yaml"
    workspace.write_text("\n".join(lines) + "\n")
    return workspace


# -- small measurements --------------------------------------------------------------------------


def ms_stats(samples_s: Sequence[float]) -> Dict[str, float]:
    values = [s * 1000.0 for s in samples_s]
    return {
        "count": len(values),
        "median_ms": round(statistics.median(values), 1),
        "min_ms": round(min(values), 1),
        "max_ms": round(max(values), 1),
    }


def time_command(
    argv: Sequence[str],
    env: Dict[str, str],
    cwd: Path,
    runs: int,
    expect: int = 0,
    floor: Optional[Sequence[str]] = None,
) -> Dict[str, float]:
    """Wall time of `argv` run to its end, `runs` times after one untimed run.

    With `floor` (an argv, e.g. `python -c pass`), that is run just before each sample and
    `over_floor_ms` is the median of the paired differences: on a shared machine both see
    the same load, which a floor taken minutes apart does not.
    """
    samples: List[float] = []
    floors: List[float] = []
    for i in range(runs + 1):
        if floor is not None:
            t0 = time.perf_counter()
            subprocess.run(list(floor), env=env, cwd=cwd, check=True, capture_output=True)
            floor_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if done.returncode != expect:
            raise RuntimeError(
                f"{' '.join(argv)}: exit {done.returncode}, expected {expect}:\n"
                f"{(done.stderr or done.stdout)[-800:]}"
            )
        if i:
            samples.append(elapsed)
            if floor is not None:
                floors.append(floor_s)
    result = ms_stats(samples)
    if floors:
        result["floor_ms"] = round(statistics.median(floors) * 1000, 1)
        result["over_floor_ms"] = round(
            statistics.median(s - f for s, f in zip(samples, floors)) * 1000, 1
        )
    return result


def open_fds(pid: int) -> Optional[int]:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple:
    """(status, body) of one GET on a new connection; raises OSError while nothing listens."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def livez_round_trips(port: int, count: int) -> Dict[str, float]:
    """`GET /livez` on one open keep-alive socket, one after another, after 20 untimed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    samples: List[float] = []
    try:
        for i in range(count + 20):
            t0 = time.perf_counter()
            conn.request("GET", "/livez")
            resp = conn.getresponse()
            resp.read()
            if i >= 20:
                samples.append((time.perf_counter() - t0) * 1000.0)
            if resp.status != 200:
                raise RuntimeError(f"/livez answered {resp.status}")
    finally:
        conn.close()
    return {
        "count": count,
        "p50_ms": round(measure.percentile(samples, 50), 3),
        "p99_ms": round(measure.percentile(samples, 99), 3),
    }


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# -- floors --------------------------------------------------------------------------------------


def import_argv(target: Target, root: Path) -> List[str]:
    """argv of a bare interpreter that imports the trivial repository as a location would
    (the SDK through a folder holding a `workspace_manager` symlink) and exits; cwd: its
    folder, `root/floor`."""
    sdk, code = root / "floor-sdk", root / "floor"
    path = f"[{str(sdk)!r}, {str(code)!r}]"
    return [str(target.python), "-c", f"import sys; sys.path[:0] = {path}; import trivial_repo"]


def parallel_imports(
    argv: Sequence[str], cwd: Path, env: Dict[str, str], count: int
) -> Dict[str, float]:
    """`count` bare imports started at once (as `wsm up` starts its locations), until all
    have exited: wall seconds, and the CPU seconds they used (user + system, from this
    process's reaped children), which a loaded machine inflates far less than the wall
    time: on a shared machine each process gets an equal share, so N processes at once
    compete as N locations do."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    failed = sum(proc.wait() != 0 for proc in procs)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if failed:
        raise RuntimeError(f"{failed} of {count} bare imports failed: {' '.join(argv)}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": elapsed, "cpu_s": cpu}


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of `root` and its live descendants, plus the children
    `root` has already reaped (cutime, cstime: environment probes, helpers)."""
    descendants = measure.process_tree(root)[1:]
    return measure.cpu_seconds(root, children=True) + sum(map(measure.cpu_seconds, descendants))


def measure_floors(target: Target, root: Path, env: Dict[str, str], runs: int) -> Dict[str, Any]:
    """`python -c pass`; an interpreter importing what the manager serves `/readyz` with
    (`SERVING_STACK`); a bare interpreter importing the trivial repository (time, USS)."""
    code = root / "floor"
    code.mkdir()
    (code / "trivial_repo.py").write_text(TRIVIAL_WSM)
    sdk = root / "floor-sdk"
    sdk.mkdir()
    os.symlink(target.package_dir, sdk / "workspace_manager")  # as loader/launch.py's sdk dir
    python = str(target.python)
    argv = measure.bare_import_argv(python, [str(sdk), str(code)], "trivial_repo")
    passes: List[float] = []
    stacks: List[float] = []
    imports: List[Dict[str, float]] = []
    for i in range(runs + 1):  # the first writes any .pyc, untimed
        t0 = time.perf_counter()
        subprocess.run([python, "-c", "pass"], env=env, check=True)
        elapsed = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([python, "-c", SERVING_STACK], env=env, check=True)
        stack = time.perf_counter() - t0
        imported = measure.measure_bare_import(argv, cwd=str(code), env=env)
        if i:
            passes.append(elapsed)
            stacks.append(stack)
            imports.append(imported)
    return {
        "python_pass": ms_stats(passes),
        "python_serving_stack": ms_stats(stacks),
        "python_import_repo": ms_stats([r["seconds"] for r in imports]),
        "bare_uss_mb": round(statistics.median(r["uss_bytes"] for r in imports) / 2**20, 2),
        "bare_rss_mb": round(statistics.median(r["rss_bytes"] for r in imports) / 2**20, 2),
    }


def measure_commands(target: Target, root: Path, env: Dict[str, str], runs: int) -> Dict[str, Any]:
    """`wsm --version`, `wsm status` with no manager, `wsm list` of one location, each
    paired with its floor (see the module docstring)."""
    wsm = str(target.wsm)
    empty = root / "no-manager"
    empty.mkdir()
    write_workspace(empty, 1, TRIVIAL_WSM)
    one = write_workspace(root / "list-1", 1, TRIVIAL_WSM)
    passing = [str(target.python), "-c", "pass"]
    return {
        "version": time_command([wsm, "--version"], env, root, runs, floor=passing),
        "status_no_manager": time_command(
            [wsm, "status"], env, empty, runs, expect=3, floor=passing
        ),
        # its floor: the command's interpreter, then the location's, one after the other
        "list_1": time_command(
            [wsm, "list", "-w", str(one)],
            env,
            one.parent,
            runs,
            floor=[
                "sh",
                "-c",
                f"{shlex.join(passing)} && cd {shlex.quote(str(root / 'floor'))} && "
                f"{shlex.join(import_argv(target, root))}",
            ],
        ),
    }


# -- wsm up --------------------------------------------------------------------------------------


class Up:
    """`wsm up` on a workspace, in its own session, health on a port picked here.

    Every pid it is seen to own is kept in `pids`; `close()` stops it with SIGTERM and
    checks each of them gone.
    """

    def __init__(self, target: Target, workspace: Path, env: Dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.pids: Set[int] = set()
        with open(log, "wb") as out:
            self.t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                [
                    str(target.wsm),
                    "up",
                    "-w",
                    str(workspace),
                    "--health",
                    f"127.0.0.1:{self.port}",
                    "--quiet-output",
                ],
                cwd=workspace.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pids.add(self.proc.pid)

    def _died(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-20:]
            raise RuntimeError(f"wsm up exited with {self.proc.returncode}:\n" + "\n".join(tail))

    def wait_ready(self, timeout: float, interval: float) -> Dict[str, float]:
        """Poll `/readyz` (new connection each time, every `interval` s) until 200; seconds
        from spawn to the endpoint's first answer and to the 200."""
        first: Optional[float] = None
        deadline = self.t0 + timeout
        tracked = 0.0
        while True:
            try:
                status, _ = http_get(self.port, "/readyz", timeout=5)
                now = time.perf_counter()
                if first is None:
                    first = now - self.t0
                if status == 200:
                    return {"health_answers_s": first, "readyz_200_s": now - self.t0}
            except OSError:
                self._died()
            if time.perf_counter() > deadline:
                self._died()
                raise RuntimeError(f"/readyz not 200 after {timeout:g} s (log: {self.log})")
            if time.perf_counter() - tracked > 0.5:  # a scan of /proc costs at 1,000 processes
                self.track()
                tracked = time.perf_counter()
            time.sleep(interval)

    def track(self) -> None:
        """Remember every descendant of the manager now (a location may leave its group)."""
        try:
            self.pids.update(measure.process_tree(self.proc.pid))
        except OSError:
            pass

    def status(self) -> Dict[str, Any]:
        status, body = http_get(self.port, "/status", timeout=30)
        if status != 200:
            raise RuntimeError(f"/status answered {status}")
        doc: Dict[str, Any] = json.loads(body)
        for loc in doc.get("locations", {}).values():
            if loc.get("pid"):
                self.pids.add(int(loc["pid"]))
        return doc

    def close(self, grace_s: float = 10.0) -> Dict[str, Any]:
        """SIGTERM (what Ctrl-C does), wait; then every pid seen must be gone within
        `grace_s` ("within a few seconds", SPEC 6), or it is killed and listed."""
        self.track()
        t0 = time.perf_counter()
        stopped_s: Optional[float] = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
                stopped_s = time.perf_counter() - t0
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + grace_s
        left = [p for p in self.pids if measure.alive(p)]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [p for p in left if measure.alive(p)]
        killed = measure.kill_tree(left)
        measure.kill_group(self.proc)
        return {
            "exit_code": self.proc.returncode,
            "stop_s": stopped_s,
            "processes_seen": len(self.pids),
            "processes_left": sorted(killed),
        }


def manager_ready_ms(log: Path) -> Optional[float]:
    """The median of the manager's own "ready ... in N ms" (each location's spawn -> ready,
    as its console says it), or None when it printed none."""
    text = log.read_text(errors="replace") if log.exists() else ""
    found = [int(m.group(1)) for m in re.finditer(r" ready\b.* in (\d+) ms", text)]
    return statistics.median(found) if found else None


def fork_servers(manager: int, locations: Sequence[int]) -> List[int]:
    """The manager's children that are fork servers (their command line names
    loader/forkserver.py; a forked location inherits it, so the locations are left out)."""
    found = []
    for pid in measure.process_tree(manager)[1:]:
        if pid in locations:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"workspace_manager.loader.forkserver" in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def count_states(up: Up, doc: Optional[Dict[str, Any]] = None) -> Dict[str, int]:
    """How many locations are in each state, from `/status` (empty if it does not answer)."""
    try:
        doc = doc or up.status()
    except (OSError, RuntimeError, ValueError):
        return {}
    states: Dict[str, int] = {}
    for loc in doc["locations"].values():
        states[loc["state"]] = states.get(loc["state"], 0) + 1
    return states


def measure_up(
    target: Target,
    root: Path,
    env: Dict[str, str],
    count: int,
    idle_s: float,
    livez: int,
    floors: Dict[str, Any],
    with_status_command: int = 0,
    forkserver: Optional[str] = None,
) -> Dict[str, Any]:
    """One `wsm up` of `count` trivial locations: every figure of the module docstring.
    `forkserver` "on" or "off" sets WSM_FORKSERVER for it (None: wsm's default)."""
    workspace = write_workspace(root / f"ws-{count}", count, TRIVIAL_WSM)
    if forkserver is not None:
        env = dict(env, WSM_FORKSERVER=forkserver)
    # a restart's `wsm up`, as users run it: the workspace was validated before (its
    # verdict cached by content, workspace/validation_cache.py), so jsonschema and the
    # YAML position reader are not imported; the first `wsm up` of a new file pays that
    subprocess.run(
        [str(target.wsm), "validate", "-w", str(workspace)],
        env=env,
        cwd=workspace.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    # the floor right before, under the same load
    floor = parallel_imports(import_argv(target, root), root / "floor", env, count)
    floor_s = floor["wall_s"]
    up = Up(target, workspace, env, root / f"up-{count}-{forkserver or 'default'}.log")
    result: Dict[str, Any] = {
        "locations": count,
        "forkserver": forkserver or "default",
        "floor_ms": round(floor_s * 1000, 1),
        "floor_cpu_s": round(floor["cpu_s"], 3),
    }
    try:
        # each answer builds the manager's view of every location: poll the bigger ones less
        interval = 0.005 if count <= 10 else 0.02 if count <= 100 else 0.05
        result["readyz_poll_ms"] = interval * 1000
        try:
            ready = up.wait_ready(timeout=60 + count * 0.5, interval=interval)
        except RuntimeError as exc:
            if up.proc.poll() is not None:
                raise
            # not all ready in time (fds run out at 1,000?): say which states, go on
            result["error"] = str(exc)
            result["states"] = count_states(up)
            return result
        result["health_answers_ms"] = round(ready["health_answers_s"] * 1000, 1)
        result["readyz_200_ms"] = round(ready["readyz_200_s"] * 1000, 1)
        result["readyz_over_floor_ms"] = round((ready["readyz_200_s"] - floor_s) * 1000, 1)
        cpu = tree_cpu_seconds(up.proc.pid)  # at once: idle locations add next to nothing
        result["cpu_to_ready_s"] = round(cpu, 3)
        result["cpu_over_floor_s"] = round(cpu - floor["cpu_s"], 3)
        result["cpu_over_floor_per_location_ms"] = round((cpu - floor["cpu_s"]) / count * 1000, 1)
        manager = up.proc.pid
        result["manager_cpu_to_ready_s"] = round(measure.cpu_seconds(manager), 3)
        t0 = time.perf_counter()
        doc = up.status()
        result["status_answer_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        up.track()
        result["states"] = count_states(up, doc)
        loc_pids = [int(loc["pid"]) for loc in doc["locations"].values() if loc.get("pid")]
        result["location_cpu_to_ready_ms_mean"] = round(
            sum(map(measure.cpu_seconds, loc_pids)) / max(1, len(loc_pids)) * 1000, 1
        )
        result["location_ready_ms_median"] = manager_ready_ms(up.log)
        servers = fork_servers(manager, loc_pids)
        result["fork_servers"] = len(servers)
        result["fork_servers_uss_mb"] = round(sum(map(measure.uss_bytes, servers)) / 2**20, 2)
        result["manager_rss_mb"] = round(measure.rss_of(manager) / 2**20, 1)
        result["manager_uss_mb"] = round(measure.uss_bytes(manager) / 2**20, 1)
        result["manager_fds"] = open_fds(manager)
        sample = loc_pids[:: max(1, len(loc_pids) // 50)][:50]
        uss = [measure.uss_bytes(p) for p in sample]
        uss = [u for u in uss if u]
        pss = [measure.smaps_rollup(p).get("Pss", 0) for p in sample]
        if uss:
            result["location_pss_mb"] = round(statistics.median(pss) / 2**20, 2)
            median_uss = statistics.median(uss) / 2**20
            result["location_uss_mb"] = round(median_uss, 2)
            result["location_uss_over_floor_mb"] = round(median_uss - floors["bare_uss_mb"], 2)
            result["location_rss_mb"] = round(
                statistics.median(measure.rss_of(p) for p in sample) / 2**20, 2
            )
        result["tree_processes"] = len(measure.process_tree(manager))
        # idle: let the start's tail (first heartbeats, samples) pass, then count CPU
        time.sleep(min(2.0, idle_s / 4))
        m0, l0, w0 = (
            measure.cpu_seconds(manager),
            sum(measure.cpu_seconds(p) for p in loc_pids),
            time.monotonic(),
        )
        time.sleep(idle_s)
        m1, l1, w1 = (
            measure.cpu_seconds(manager),
            sum(measure.cpu_seconds(p) for p in loc_pids),
            time.monotonic(),
        )
        result["idle_window_s"] = round(w1 - w0, 1)
        result["manager_idle_cpu_pct"] = round((m1 - m0) / (w1 - w0) * 100, 2)
        result["locations_idle_cpu_pct"] = round((l1 - l0) / (w1 - w0) * 100, 2)
        result["manager_rss_after_idle_mb"] = round(measure.rss_of(manager) / 2**20, 1)
        if livez:
            result["livez"] = livez_round_trips(up.port, livez)
        if with_status_command:
            result["wsm_status_running"] = time_command(
                [str(target.wsm), "status", "-w", str(workspace)],
                env,
                workspace.parent,
                with_status_command,
                floor=[str(target.python), "-c", "pass"],
            )
        up.track()
    finally:
        result["stop"] = up.close()
    return result


# -- run launch ----------------------------------------------------------------------------------


def measure_launch(target: Target, root: Path, runs: int) -> Dict[str, Any]:
    """bench/run_launch_bench.py on the target's interpreter; its JSON line.

    Run from a copy in a folder of its own: the script puts its checkout first on sys.path,
    which would make the measured install talk to its manager with this checkout's code.
    """
    copy = root / "launch-bench" / "bench" / "run_launch_bench.py"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "run_launch_bench.py", copy)
    done = subprocess.run(
        [str(target.python), str(copy), "--runs", str(runs)],
        capture_output=True,
        text=True,
        timeout=120 + 20 * runs,
        cwd="/",
        start_new_session=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"run_launch_bench failed: {(done.stderr or done.stdout)[-800:]}")
    result: Dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result.pop("wsm_pyc_files_before", None)  # counted in the copy's folder: meaningless
    return result


LAUNCH_FIGURES = (
    "job_execute_command",
    "queued_launch_to_first_line",
    "queued_starting_to_job_started",
    "floor_interpreter_and_import",
)


def compare_launch(targets: Sequence[Target], root: Path, runs: int, rounds: int) -> Dict[str, Any]:
    """Run launch of each install in turn, `rounds` times (install A, B, A, B, ...: both see
    the same load), `runs` samples each time; per install, each figure's median over the
    rounds' medians, the over-floor figures likewise, the fastest sample of each figure
    over all rounds, and every round's JSON."""
    per: Dict[str, List[Dict[str, Any]]] = {str(t.wsm): [] for t in targets}
    for i in range(rounds):
        for target in targets:
            per[str(target.wsm)].append(measure_launch(target, root / f"launch-{i}", runs))
    out: Dict[str, Any] = {}
    for target in targets:
        done = per[str(target.wsm)]
        summary: Dict[str, Any] = {
            name: round(statistics.median(r[name]["median_ms"] for r in done), 1)
            for name in LAUNCH_FIGURES
        }
        for name in ("job_execute_over_floor_ms", "queued_launch_over_floor_ms"):
            summary[name] = round(statistics.median(r[name] for r in done), 1)
        # the fastest sample of all rounds: on a loaded machine it moves least
        fastest = {name: min(r[name]["min_ms"] for r in done) for name in LAUNCH_FIGURES}
        out[str(target.wsm)] = {
            "version": target.version,
            "median": summary,
            "min": fastest,
            "rounds": done,
        }
    return out


# -- the loader side alone -----------------------------------------------------------------------


def measure_loader(
    target: Target, pythons: Sequence[str], root: Path, runs: int, count: int
) -> Dict[str, Any]:
    """A location's start-up, loader side only, on each of `pythons`, with the target's
    package (its loader harness and SDK): `import workspace_manager.sdk` and the trivial
    repository's import (`-X importtime`, min and median over `runs`); a loader's spawn ->
    `loaded` (median and min of `runs`, started as the manager starts one); the USS over a
    bare interpreter that imported the same repository of `count` loaders that loaded it
    and answered get_snapshot and ping, all running at once (the interpreter's pages are
    then shared, as among the locations of `wsm up`)."""
    sys.path.insert(0, str(Path(target.package_dir).parent))  # the target's harness and SDK
    from workspace_manager.loader.harness import LoaderProcess, file_target
    from workspace_manager.loader.launch import make_sdk_dir

    code = root / "loader-code"
    code.mkdir()
    (code / "trivial_repo.py").write_text(TRIVIAL_WSM)
    sdk = make_sdk_dir(str(root))
    env = measure.bench_env()
    env.pop("PYTHONPATH", None)
    results: Dict[str, Any] = {}
    for python in pythons:
        head = f"import sys; sys.path[:0] = [{str(code)!r}, {sdk!r}]; "
        measure.import_time_ms(python, head + "import trivial_repo", 2, env)  # writes .pyc
        result: Dict[str, Any] = {
            "sdk_import_ms": measure.import_time_ms(
                python, head + "import workspace_manager.sdk", runs, env
            ),
            "repo_import_ms": measure.import_time_ms(
                python, head + "import trivial_repo", runs, env
            ),
        }
        repo = str(code / "trivial_repo.py")
        starts: List[float] = []
        for i in range(runs):
            with LoaderProcess(
                python, file_target(repo), str(root), location=f"t{i}", env=env
            ) as one:
                began = time.perf_counter()
                event = one.start()[1]
                starts.append((time.perf_counter() - began) * 1000)
                if event != "loaded":
                    raise RuntimeError(f"the loader on {python}: {one.stderr_text()[-800:]}")
        result["spawn_to_loaded_ms_median"] = round(statistics.median(starts), 1)
        result["spawn_to_loaded_ms_min"] = round(min(starts), 1)
        bare = measure.bare_import_argv(python, [str(code), sdk], "trivial_repo")
        running: List[Any] = []
        clients: List[Any] = []
        base = measure.spawn(bare, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            if base.stdout is None or base.stdout.readline().strip() != b"imported":
                raise RuntimeError(f"the bare import on {python} failed")
            for i in range(count):
                one = LoaderProcess(python, file_target(repo), str(root), location=f"m{i}", env=env)
                running.append(one)
                if one.start()[1] != "loaded":
                    raise RuntimeError(f"the loader on {python}: {one.stderr_text()[-800:]}")
                clients.append(one.client())
                clients[-1].call("get_snapshot")
                clients[-1].call("ping")
            time.sleep(0.5)
            base_uss = measure.uss_bytes(base.pid)
            over = sorted(measure.uss_bytes(one.pid) - base_uss for one in running)
        finally:
            for client in clients:
                client.close()
            for one in running:
                one.stop()
            measure.stop(base)
        result["bare_uss_kb"] = base_uss // 1024
        result["uss_over_bare_kb_median"] = statistics.median(over) // 1024
        result["uss_over_bare_kb_max"] = over[-1] // 1024
        results[python] = result
    return results


def fork_latency(target: Target, root: Path, requests: int) -> Dict[str, Any]:
    """One fork server of the target's on its own: its start, the round trip of a fork
    request (send, double fork, answer) and the CPU the server and its middle processes
    spend per fork. Each forked child gets EOF on its stdin at once and exits (status 3: no
    bootstrap), as an unanswered fork would."""
    sys.path.insert(0, str(Path(target.package_dir).parent))
    from workspace_manager.loader.harness import start_fork_server
    from workspace_manager.loader.launch import make_sdk_dir

    t0 = time.monotonic()
    proc, ours = start_fork_server(str(target.python), make_sdk_dir(str(root)))
    server_start = time.monotonic() - t0
    try:
        cpu0 = measure.cpu_seconds(proc.pid, children=True)
        took = []
        devnull = os.open(os.devnull, os.O_RDWR)
        for i in range(requests):
            r, w = os.pipe()
            a, b = socket.socketpair()
            t = time.perf_counter()
            request = json.dumps({"id": i, "cwd": "/", "env": {}}).encode()
            socket.send_fds(ours, [request], [r, devnull, devnull, b.fileno()])
            json.loads(ours.recv(65536))
            took.append((time.perf_counter() - t) * 1000)
            for fd in (r, w):
                os.close(fd)
            a.close()
            b.close()
        os.close(devnull)
        cpu = (measure.cpu_seconds(proc.pid, children=True) - cpu0) / requests * 1000
    finally:
        ours.close()  # EOF: the server ends
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {
        "requests": requests,
        "server_start_ms": round(server_start * 1000, 1),
        "fork_round_trip_ms_p50": round(measure.percentile(took, 50), 2),
        "fork_round_trip_ms_p90": round(measure.percentile(took, 90), 2),
        "server_cpu_ms_per_fork": round(cpu, 2),
    }


# -- Dagster -------------------------------------------------------------------------------------

LOCATIONS_QUERY = (
    "{ workspaceOrError { __typename ... on Workspace { locationEntries "
    "{ name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)


def dagster_venv(venv_dir: Optional[str], log: Callable[[str], None]) -> Optional[Path]:
    """The Dagster venv's bin folder (installed once, reused), or None if it cannot be had."""
    import dagster_location

    venv = Path(venv_dir) if venv_dir else dagster_location.CACHE_ROOT / DAGSTER_VENV
    python = dagster_location.ensure_venv(venv, log=log, spec=DAGSTER_SPEC)
    if python is None or not (venv / "bin" / "dagster-webserver").exists():
        return None
    return venv / "bin"


def dagster_loaded(port: int, count: int) -> bool:
    """True once the webserver's GraphQL lists `count` locations, every one LOADED."""
    body = json.dumps({"query": LOCATIONS_QUERY}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/graphql", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        return False
    doc = json.loads(data)
    entries = ((doc.get("data") or {}).get("workspaceOrError") or {}).get("locationEntries") or []
    if len(entries) != count or any(e["loadStatus"] != "LOADED" for e in entries):
        return False
    errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
    if errors:
        first = errors[0]
        raise RuntimeError(
            f"Dagster could not load {len(errors)} location(s), {first['name']}: "
            f"{first['locationOrLoadError'].get('message', '').strip()[-500:]}"
        )
    return True


def dagster_webserver(bindir: Path, root: Path, count: int) -> Dict[str, Any]:
    """`dagster-webserver -w` on `count` trivial locations: spawn -> all LOADED, memory."""
    workspace = write_workspace(root / f"dagster-ws-{count}", count, TRIVIAL_DAGSTER)
    home = root / f"dagster-home-{count}"
    home.mkdir()
    port = free_port()
    log = root / f"dagster-webserver-{count}.log"
    env = measure.bench_env(DAGSTER_HOME=str(home))
    env.pop("PYTHONPATH", None)
    argv = [str(bindir / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1"]
    argv += ["-p", str(port)]
    pids: Set[int] = set()
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = measure.spawn(
            argv,
            cwd=str(workspace.parent),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    result: Dict[str, Any] = {"locations": count}
    try:
        deadline = t0 + 120 + 30 * count
        while True:
            pids.update(measure.process_tree(proc.pid))
            try:
                if dagster_loaded(port, count):
                    result["all_loaded_ms"] = round((time.perf_counter() - t0) * 1000, 1)
                    break
            except (OSError, ValueError):
                pass
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").splitlines()[-20:]
                raise RuntimeError("dagster-webserver exited:\n" + "\n".join(tail))
            if time.perf_counter() > deadline:
                raise RuntimeError(f"Dagster's locations not loaded in time (log: {log})")
            time.sleep(0.05)
        tree = measure.process_tree(proc.pid)
        pids.update(tree)
        result["webserver_rss_mb"] = round(measure.rss_of(proc.pid) / 2**20, 1)
        result["tree_rss_mb"] = round(sum(measure.rss_of(p) for p in tree) / 2**20, 1)
        result["tree_processes"] = len(tree)
    finally:
        measure.stop(proc, grace_s=15.0)
        time.sleep(0.2)
        result["processes_left"] = sorted(measure.kill_tree([p for p in pids if measure.alive(p)]))
    return result


def extrapolate(points: Dict[int, float], count: int) -> float:
    """A line through the measured (locations, ms) points (proportional from one point)."""
    xs = sorted(points)
    if len(xs) == 1:
        return points[xs[0]] / xs[0] * count
    lo, hi = xs[0], xs[-1]
    slope = (points[hi] - points[lo]) / (hi - lo)
    return points[lo] + slope * (count - lo)


def measure_dagster(
    bindir: Path, root: Path, sizes: Sequence[int], runs: int, wanted: Sequence[int]
) -> Dict[str, Any]:
    """Dagster's figures: `dagster --version`, the webserver at `sizes`, the rest extrapolated."""
    env = measure.bench_env()
    env.pop("PYTHONPATH", None)
    result: Dict[str, Any] = {}
    version = subprocess.run([str(bindir / "dagster"), "--version"], capture_output=True, text=True)
    result["version"] = version.stdout.strip()
    result["dagster_version_cmd"] = time_command(
        [str(bindir / "dagster"), "--version"], env, root, runs
    )
    result["webserver"] = {}
    for count in sizes:
        result["webserver"][str(count)] = dagster_webserver(bindir, root, count)
    points = {int(k): v["all_loaded_ms"] for k, v in result["webserver"].items()}
    result["extrapolated_all_loaded_ms"] = {
        str(n): round(extrapolate(points, n), 1) for n in wanted if n not in points
    }
    return result


# -- the report ----------------------------------------------------------------------------------


def fmt_ms(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 10000 else f"{value:.1f} ms"


def report(result: Dict[str, Any]) -> List[str]:
    """The table's lines: figure, wsm, floor, over the floor, target, Dagster."""
    floors = result.get("floors") or {}
    cmd = result.get("commands") or {}
    dag = result.get("dagster") or {}
    web = dag.get("webserver") or {}
    extra = dag.get("extrapolated_all_loaded_ms") or {}
    rows: List[tuple] = []

    def command(
        name: str, figure: Optional[Dict[str, float]], target: str, other: str = ""
    ) -> None:
        if figure is None:
            return
        rows.append(
            (
                name,
                fmt_ms(figure["median_ms"]),
                fmt_ms(figure.get("floor_ms")),
                fmt_ms(figure.get("over_floor_ms")),
                target,
                other,
            )
        )

    if floors:
        rows.append(
            ("floor: python -c pass", fmt_ms(floors["python_pass"]["median_ms"]), "", "", "", "")
        )
        if "python_serving_stack" in floors:
            rows.append(
                (
                    "floor: python importing asyncio + uvicorn + Starlette",
                    fmt_ms(floors["python_serving_stack"]["median_ms"]),
                    "",
                    "",
                    "",
                    "",
                )
            )
        rows.append(
            (
                "floor: bare import of the repo",
                fmt_ms(floors["python_import_repo"]["median_ms"]),
                "",
                "",
                "",
                "",
            )
        )
    dver = dag.get("dagster_version_cmd")
    command(
        "wsm --version",
        cmd.get("version"),
        "<= 60 ms",
        f"dagster --version: {fmt_ms(dver['median_ms'])}" if dver else "",
    )
    command("wsm status, no manager", cmd.get("status_no_manager"), "<= 60 ms")
    command(
        "wsm status, a manager running",
        ((result.get("up") or {}).get("1") or {}).get("wsm_status_running"),
        "<= 60 ms",
    )
    command("wsm list, 1 location", cmd.get("list_1"), "")
    ups = [(count, up, "") for count, up in (result.get("up") or {}).items()]
    ups += [(c, up, ", no fork server") for c, up in (result.get("up_no_forkserver") or {}).items()]
    for count, up, mode in sorted(ups, key=lambda u: (int(u[0]), u[2] == "")):
        n = int(count)
        if "error" in up:
            rows.append((f"wsm up, {n}{mode}: FAILED", json.dumps(up["states"]), "", "", "", ""))
            rows.append((f"  {n}: {up['error'].splitlines()[0]}", "", "", "", "", ""))
            continue
        target = {1: "<= 150 ms", 100: "<= 1.5 s"}.get(n, "") if not mode else ""
        other = ""
        if count in web:
            other = f"{fmt_ms(web[count]['all_loaded_ms'])} (measured)"
        elif count in extra:
            other = f"~{fmt_ms(extra[count])} (extrapolated)"
        rows.append(
            (
                f"wsm up, {n}{mode}: spawn -> /readyz 200",
                fmt_ms(up["readyz_200_ms"]),
                fmt_ms(up["floor_ms"]),
                fmt_ms(up["readyz_over_floor_ms"]),
                target,
                other,
            )
        )
        rows.append(
            (f"  {n}: spawn -> health answers", fmt_ms(up["health_answers_ms"]), "", "", "", "")
        )
        stack = floors.get("python_serving_stack")
        if n == 1 and stack:
            rows.append(
                (
                    "  1: /readyz 200 over asyncio + uvicorn + Starlette's import",
                    fmt_ms(up["readyz_200_ms"]),
                    fmt_ms(stack["median_ms"]),
                    fmt_ms(up["readyz_200_ms"] - stack["median_ms"]),
                    "",
                    "",
                )
            )
        rows.append(
            (
                f"  {n}: a location's spawn -> ready (manager's log, median); CPU each",
                f"{fmt_ms(up.get('location_ready_ms_median'))}; "
                f"{fmt_ms(up.get('location_cpu_to_ready_ms_mean'))}",
                "",
                "",
                "",
                "",
            )
        )
        rows.append(
            (
                f"  {n}: CPU to ready, manager + locations (s)",
                f"{up['cpu_to_ready_s']:.2f}",
                f"{up['floor_cpu_s']:.2f}",
                f"{up['cpu_over_floor_s']:.2f} ({up['cpu_over_floor_per_location_ms']} ms each)",
                "",
                "",
            )
        )
        rows.append(
            (
                f"  {n}: manager RSS / USS (MB), fds; fork servers (USS MB)",
                f"{up['manager_rss_mb']} / {up['manager_uss_mb']}, {up['manager_fds']}; "
                f"{up.get('fork_servers')} ({up.get('fork_servers_uss_mb')})",
                "",
                "",
                "RSS <= 60" if n >= 100 else "",
                f"webserver {web[count]['webserver_rss_mb']}, tree {web[count]['tree_rss_mb']}"
                if count in web
                else "",
            )
        )
        rows.append(
            (
                f"  {n}: location USS (PSS) (MB)",
                f"{up.get('location_uss_mb')} ({up.get('location_pss_mb')})",
                str(floors.get("bare_uss_mb")),
                str(up.get("location_uss_over_floor_mb")),
                "over <= 4",
                "",
            )
        )
        rows.append(
            (
                f"  {n}: idle CPU % of a core, manager / locations",
                f"{up['manager_idle_cpu_pct']} / {up['locations_idle_cpu_pct']}",
                "",
                "",
                "manager <= 0.5" if n >= 100 else "",
                "",
            )
        )
        if up.get("livez"):
            rows.append(
                (
                    f"  {n}: /livez p50 / p99 (ms)",
                    f"{up['livez']['p50_ms']} / {up['livez']['p99_ms']}",
                    "",
                    "",
                    "p99 < 5" if n >= 1000 else "",
                    "",
                )
            )
        stop = up["stop"]
        rows.append(
            (
                f"  {n}: SIGTERM -> exit; processes left",
                f"{fmt_ms((stop['stop_s'] or 0) * 1000)}; {len(stop['processes_left'])}",
                "",
                "",
                "0 left",
                "",
            )
        )
    for count in sorted(set(web) | set(extra), key=int):
        if count not in (result.get("up") or {}):
            other = (
                f"{fmt_ms(web[count]['all_loaded_ms'])} (measured)"
                if count in web
                else f"~{fmt_ms(extra[count])} (extrapolated)"
            )
            rows.append((f"wsm up, {count}", "(not run)", "", "", "", other))

    def launch_rows(indent: str, medians: Dict[str, Any]) -> None:
        floor = fmt_ms(medians["floor_interpreter_and_import"])
        for name, figure, over in (
            ("wsm job execute (trivial job)", "job_execute_command", "job_execute_over_floor_ms"),
            ("queued launch -> job's first line", "queued_launch_to_first_line",
             "queued_launch_over_floor_ms"),
        ):  # fmt: skip
            rows.append(
                (indent + name, fmt_ms(medians[figure]), floor, fmt_ms(medians[over]), "", "")
            )

    launch = result.get("launch")
    if launch:  # one run_launch_bench: each figure's median of its runs
        launch_rows(
            "", {k: v.get("median_ms") if isinstance(v, dict) else v for k, v in launch.items()}
        )
    for wsm, each in (result.get("launch_compare") or {}).items():
        rows.append((f"launch, {each['version']} ({wsm})", "", "", "", "", ""))
        launch_rows("  ", each["median"])
        best = each.get("min") or {}
        if best:
            rows.append(
                (
                    "  fastest: job execute; queued launch; floor",
                    f"{fmt_ms(best['job_execute_command'])}; "
                    f"{fmt_ms(best['queued_launch_to_first_line'])}",
                    fmt_ms(best["floor_interpreter_and_import"]),
                    "",
                    "",
                    "",
                )
            )
    for python, each in (result.get("loader") or {}).items():
        rows.append((f"loader side, {python}", "", "", "", "", ""))
        rows.append(
            (
                "  import workspace_manager.sdk; the repo (min, ms)",
                f"{each['sdk_import_ms']['min']:.1f}; {each['repo_import_ms']['min']:.1f}",
                "",
                "",
                "",
                "",
            )
        )
        rows.append(
            (
                "  loader spawn -> loaded (median)",
                fmt_ms(each["spawn_to_loaded_ms_median"]),
                "",
                "",
                "",
                "",
            )
        )
        rows.append(
            (
                "  loader USS over a bare import (kB, median)",
                str(each["uss_over_bare_kb_median"]),
                str(each["bare_uss_kb"]),
                "",
                "<= 4096",
                "",
            )
        )
    fork = result.get("fork_latency")
    if fork:
        rows.append(
            (
                f"fork server: start; fork round trip p50 / p90 ({fork['requests']} forks)",
                f"{fmt_ms(fork['server_start_ms'])}; {fork['fork_round_trip_ms_p50']} / "
                f"{fork['fork_round_trip_ms_p90']} ms",
                "",
                "",
                "",
                f"server CPU {fork['server_cpu_ms_per_fork']} ms a fork",
            )
        )
    head = ("figure", "wsm", "floor", "over floor", "target", "Dagster")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def check_targets(result: Dict[str, Any]) -> Dict[str, Any]:
    """Each target's measured value and whether it is met (None: not measured this run)."""
    up = result.get("up") or {}
    commands = result.get("commands") or {}

    def get(count: str, key: str) -> Optional[float]:
        return (up.get(count) or {}).get(key)

    running = (up.get("1") or {}).get("wsm_status_running")
    values = {
        "wsm_version_ms": (commands.get("version") or {}).get("median_ms"),
        "wsm_status_ms": max(
            (commands.get("status_no_manager") or {}).get("median_ms", 0),
            running["median_ms"] if running else 0,
        )
        or None,
        "up_1_readyz_ms": get("1", "readyz_200_ms"),
        "up_100_readyz_ms": get("100", "readyz_200_ms"),
        "up_100_manager_rss_mb": get("100", "manager_rss_mb"),
        "up_100_location_uss_over_floor_mb": get("100", "location_uss_over_floor_mb"),
        "up_100_idle_cpu_pct": get("100", "manager_idle_cpu_pct"),
        "up_1000_livez_p99_ms": ((up.get("1000") or {}).get("livez") or {}).get("p99_ms"),
    }
    return {
        name: {
            "value": value,
            "target": TARGETS[name],
            "met": None if value is None else value <= TARGETS[name],
        }
        for name, value in values.items()
    }


# -- main ----------------------------------------------------------------------------------------


PARTS = ("commands", "up", "launch", "dagster", "loader", "fork-latency")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wsm", help="the wsm executable (or its virtualenv) to measure")
    parser.add_argument("--quick", action="store_true", help="1 and 10 locations, short windows")
    parser.add_argument("--thousand", action="store_true", help="also 1,000 locations")
    parser.add_argument("--sizes", help="location counts, comma-separated (overrides the default)")
    parser.add_argument("--idle", type=float, help="idle window in seconds (30; quick 2)")
    parser.add_argument("--runs", type=int, help="runs of each command and floor (10; quick 3)")
    parser.add_argument("--launch-runs", type=int, help="runs of run_launch_bench (5; quick 0)")
    parser.add_argument(
        "--forkserver",
        choices=("on", "off", "both"),
        help="WSM_FORKSERVER for each wsm up; both: off, then on, for every size",
    )
    parser.add_argument(
        "--compare",
        metavar="WSM",
        action="append",
        default=[],
        help="another install whose run launch is measured in turn with --wsm's (repeatable)",
    )
    parser.add_argument("--launch-rounds", type=int, default=3, help="rounds with --compare (3)")
    parser.add_argument(
        "--loader", action="store_true", help="also the loader side alone (about a minute)"
    )
    parser.add_argument(
        "--loader-python",
        action="append",
        help="an interpreter for --loader (repeatable; default: the install's and /usr/bin/python3)",
    )
    parser.add_argument("--loader-locations", type=int, default=5, help="loaders at once (5)")
    parser.add_argument("--fork-latency", type=int, metavar="N", help="also time N fork requests")
    parser.add_argument(
        "--only",
        help=f"only these parts, comma-separated, of: {', '.join(PARTS)}",
    )
    parser.add_argument("--no-dagster", action="store_true", help="wsm only")
    parser.add_argument("--dagster-venv", help="where Dagster's webserver is installed")
    parser.add_argument(
        "--dagster-sizes",
        help="Dagster webserver location counts (1,10); with --quick, Dagster runs only if given",
    )
    args = parser.parse_args(argv)

    parts = {"commands", "up", "launch", "dagster"}
    if args.loader:
        parts.add("loader")
    if args.fork_latency:
        parts.add("fork-latency")
    if args.only:
        parts = {p.strip() for p in args.only.split(",")}
        unknown = parts - set(PARTS)
        if unknown:
            parser.error(
                f"--only: no part {', '.join(sorted(unknown))} (parts: {', '.join(PARTS)})"
            )
    if args.no_dagster or (args.quick and not args.dagster_sizes):
        parts.discard("dagster")
    sizes = [1, 10] if args.quick else [1, 10, 100]
    if args.thousand:
        sizes.append(1000)
    if args.sizes:
        sizes = sorted({int(s) for s in args.sizes.split(",")} | {1})  # 1 hosts `status`
    idle = args.idle if args.idle is not None else (2.0 if args.quick else 30.0)
    runs = args.runs if args.runs is not None else (3 if args.quick else 10)
    launch_runs = args.launch_runs if args.launch_runs is not None else (0 if args.quick else 5)
    if not launch_runs:
        parts.discard("launch")
    if args.compare and "launch" not in parts:
        parser.error("--compare measures the run launch: give --launch-runs N (and its part)")
    dagster_sizes = [int(s) for s in (args.dagster_sizes or "1,10").split(",")]
    modes: List[Optional[str]] = ["off", "on"] if args.forkserver == "both" else [args.forkserver]
    if "up" in parts and max(sizes) >= 1000:
        with open("/proc/meminfo") as f:
            avail_kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        if avail_kb * 1024 < max(sizes) * 10 * 2**20:  # ~9.3 MB unique a location before issue 11
            print(
                f"startup_bench: {max(sizes)} locations may need ~{max(sizes) * 10 // 1024} GB; "
                f"{avail_kb // 2**20} GB available: going on",
                file=sys.stderr,
            )

    measure.sigterm_as_keyboard_interrupt()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # N bare imports at once
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    target = Target.resolve(args.wsm)
    others = [Target.resolve(other) for other in args.compare]
    root = Path(tempfile.mkdtemp(prefix="wsm-startup-bench-"))
    result: Dict[str, Any] = {
        "wsm": str(target.wsm),
        "python": str(target.python),
        "wsm_version": target.version,
        "package_dir": target.package_dir,
        "quick": args.quick,
        "parts": sorted(parts),
        "load_average_start": load_average(),
        "targets": {},
        "up": {},
    }
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    try:
        env = bench_env(root)
        log(f"measuring {target.wsm} ({target.version}) on {target.python}; load {load_average()}")
        if parts & {"commands", "up"}:
            result["floors"] = measure_floors(target, root, env, runs)
        if "commands" in parts:
            result["commands"] = measure_commands(target, root, env, runs)
        for count in sizes if "up" in parts else []:
            for mode in modes:
                log(f"wsm up, {count} location(s), fork server {mode or 'default'} ...")
                measured = measure_up(
                    target,
                    root,
                    env,
                    count,
                    idle,
                    livez=50 if args.quick else 500,
                    floors=result["floors"],
                    with_status_command=runs if count == 1 and mode == modes[-1] else 0,
                    forkserver=mode,
                )
                key = "up_no_forkserver" if args.forkserver == "both" and mode == "off" else "up"
                result.setdefault(key, {})[str(count)] = measured
        if "launch" in parts:
            log("run launch (bench/run_launch_bench.py) ...")
            if others:
                result["launch_compare"] = compare_launch(
                    [target, *others], root, launch_runs, args.launch_rounds
                )
            else:
                result["launch"] = measure_launch(target, root, launch_runs)
        if "loader" in parts:
            pythons = args.loader_python or [
                p for p in (str(target.python), "/usr/bin/python3") if os.access(p, os.X_OK)
            ]
            log(f"the loader side on {', '.join(pythons)} ...")
            result["loader"] = measure_loader(
                target, pythons, root, args.runs or 15, args.loader_locations
            )
        if "fork-latency" in parts:
            log("fork requests to one fork server ...")
            result["fork_latency"] = fork_latency(target, root, args.fork_latency or 100)
        if "dagster" in parts:
            bindir = dagster_venv(args.dagster_venv, log)
            if bindir is None:
                result["dagster"] = None
                log("Dagster is not available: its column stays empty")
            else:
                log(f"Dagster webserver, {dagster_sizes} location(s) ...")
                try:
                    result["dagster"] = measure_dagster(
                        bindir, root, dagster_sizes, runs, sorted(set(sizes) | {100, 1000})
                    )
                except RuntimeError as exc:  # wsm's figures stand without it
                    log(f"Dagster's column failed: {exc}")
                    result["dagster"] = {"error": str(exc)}
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except RuntimeError as exc:  # every process it started is stopped by now
        log(f"startup_bench: {exc}")
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["load_average_end"] = load_average()
    result["targets"] = check_targets(result)
    ups = [*result["up"].values(), *(result.get("up_no_forkserver") or {}).values()]
    left = [p for up in ups for p in up["stop"]["processes_left"]]
    left += [
        p
        for d in ((result.get("dagster") or {}).get("webserver") or {}).values()
        for p in d["processes_left"]
    ]
    result["processes_left"] = left
    print("\n".join(report(result)))
    print(
        f"load average {result['load_average_start']} -> {result['load_average_end']} "
        "(a shared machine: the figures are indicative)"
    )
    if left:
        print(f"PROCESSES LEFT BEHIND (killed): {left}")
    print(json.dumps(result))
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())

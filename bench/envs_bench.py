"""Issue-3 benchmark: environment builds and reuse.

    python bench/envs_bench.py            # everything (a few minutes)
    python bench/envs_bench.py --quick    # one cold build per installer, no `wsm up`
    python bench/envs_bench.py --uv PATH  # the uv executable to compare with pip

Figures:
- cold build of one env with one local package, pip vs uv, median of 3 (virtualenv's app-data
  warm, as after the first env on a machine; uv's own cache empty each run);
- warm start, 20 locations whose envs are cached: time a fresh process spends deciding
  reuse for all 20 (`EnvironmentService.cached`, target < 50 ms in total), and, when the
  manager builds envs, the time `wsm up` takes until `/readyz` answers 200;
- 20 locations with the same spec: how many builds (must be 1).

Everything is offline (`--no-index --no-build-isolation`). uv comes from PATH, `--uv`, or
a throwaway virtualenv in ~/.cache/wsm-bench/uv-venv (installed from the package index on
first use). Output: a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from workspace_manager.envs.progress import RecordingReporter
from workspace_manager.envs.service import EnvironmentService
from workspace_manager.workspace.load import load_workspace

OFFLINE = ["--no-index", "--no-build-isolation"]
TARGET_DECIDE_MS = 50.0
WSM = str(Path(sys.executable).parent / "wsm")

REPO = """
import sys
from workspace_manager import job, repository

@job(tags={"python": sys.version.split()[0]})
def j(): ...

@repository
def r():
    return [j]
"""


def make_package(folder: Path, dist: str) -> None:
    module = dist.replace("-", "_")
    (folder / dist / module).mkdir(parents=True)
    (folder / dist / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "1.0"
            """
        )
    )
    (folder / dist / module / "__init__.py").write_text("VALUE = 1\n")


def write_workspace(folder: Path, packages: List[str], installer: str = "pip") -> Path:
    """One location per entry of ``packages`` (the local package its env requires)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "repo.py").write_text(REPO)
    lines = ["load_from:"]
    for i, dist in enumerate(packages):
        if not (folder / dist).exists():
            make_package(folder, dist)
        lines += [
            "  - python_file:",
            "      relative_path: repo.py",
            f"      location_name: loc{i:02d}",
            "      environment:",
            f'        requirements: ["./{dist}"]',
            f"        pip_args: {json.dumps(OFFLINE)}",
            f"        installer: {installer}",
        ]
    path = folder / "workspace.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def find_uv(explicit: Optional[str]) -> Optional[str]:
    if explicit:
        return explicit
    on_path = shutil.which("uv")
    if on_path:
        return on_path
    venv = Path.home() / ".cache" / "wsm-bench" / "uv-venv"
    exe = venv / "bin" / "uv"
    if exe.exists():
        return str(exe)
    print(f"installing uv into {venv} (once)...", file=sys.stderr)
    try:
        subprocess.run(
            [sys.executable, "-m", "virtualenv", "-q", str(venv)], check=True, timeout=300
        )
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "uv"],
            check=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"uv unavailable: {exc}", file=sys.stderr)
        return None
    return str(exe) if exe.exists() else None


def uv_on_path(uv: str, tmp: Path) -> None:
    """The service finds uv on PATH; expose exactly this one."""
    bin_dir = tmp / "uv-bin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / "uv"
    if not link.exists():
        link.symlink_to(uv)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def cold_builds(tmp: Path, installer: str, runs: int) -> List[float]:
    """Seconds for `ensure` of one env with one local package, nothing of it cached."""
    cache = tmp / f"cache-{installer}"
    ws = load_workspace(write_workspace(tmp / f"cold-{installer}", ["bench-pkg"], installer))
    loc = ws.locations[0]
    times = []
    for i in range(runs + 1):  # run 0 warms virtualenv's app-data and the interpreter cache
        shutil.rmtree(cache / "envs", ignore_errors=True)
        for leftover in ("build", "bench_pkg.egg-info"):
            shutil.rmtree(loc.target.working_directory / "bench-pkg" / leftover, ignore_errors=True)
        os.environ["UV_CACHE_DIR"] = str(tmp / f"uv-cache-{i}")
        service = EnvironmentService(cache)
        t0 = time.perf_counter()
        result = asyncio.run(service.ensure(loc))
        elapsed = time.perf_counter() - t0
        service.close()
        assert result.built, "a cold build must build"
        assert service.recipe(loc).installer == installer
        if i:
            times.append(elapsed)
    return times


DECIDE = """
import json, sys, time
t0 = time.perf_counter()
from workspace_manager.envs.service import EnvironmentService
from workspace_manager.workspace.load import load_workspace
t1 = time.perf_counter()
ws = load_workspace(sys.argv[1])
t2 = time.perf_counter()
service = EnvironmentService(sys.argv[2])
found = [service.cached(loc) for loc in ws.locations]
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3,
                  "decide_ms": (t3 - t2) * 1e3, "hits": sum(1 for f in found if f)}))
"""


def warm_decision(ws_path: Path, cache: Path, runs: int = 5) -> Dict[str, Any]:
    """Each run a fresh process: what `wsm up` spends deciding reuse for every location."""
    samples = []
    env = {**os.environ, "WSM_CACHE_DIR": str(cache)}
    for _ in range(runs):
        out = subprocess.run(
            [os.path.realpath(sys.executable), "-c", DECIDE, str(ws_path), str(cache)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        samples.append(json.loads(out))
    return {
        "decide_ms": statistics.median(s["decide_ms"] for s in samples),
        "import_ms": statistics.median(s["import_ms"] for s in samples),
        "hits": min(s["hits"] for s in samples),
    }


def time_to_ready(ws_path: Path, cache: Path, timeout: float = 120.0) -> Dict[str, Any]:
    """`wsm up` on a workspace whose envs are cached: seconds until /readyz is 200."""
    if not os.path.exists(WSM):
        return {"seconds": None, "note": "no wsm executable"}
    env = {**os.environ, "WSM_CACHE_DIR": str(cache), "WSM_RUNTIME_DIR": str(cache / "run")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [WSM, "up", "-w", str(ws_path), "--health", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        port = None
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.search(r"health endpoint on http://[^:]+:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            return {"seconds": None, "note": "wsm up printed no health endpoint"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _get(port, "/readyz")[0] == 200:
                seconds = time.perf_counter() - t0
                status = json.loads(_get(port, "/status")[1])
                envs = [loc.get("environment") or "" for loc in status["locations"].values()]
                in_cache = sum(1 for e in envs if str(cache) in e)
                note = "" if in_cache == len(envs) else "manager does not use built envs yet"
                return {"seconds": seconds if not note else None, "note": note}
            time.sleep(0.02)
        return {"seconds": None, "note": "not ready in time"}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _get(port: int, path: str) -> tuple:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    except OSError:
        return 0, ""


def same_spec(tmp: Path, count: int = 20) -> Dict[str, Any]:
    """`count` locations with one spec, ensured at once: how many builds."""
    cache = tmp / "cache-same"
    ws = load_workspace(write_workspace(tmp / "same", ["shared-pkg"] * count))
    reporter = RecordingReporter()
    service = EnvironmentService(cache, reporter=reporter)

    async def all_of_them() -> list:
        return await asyncio.gather(*(service.ensure(loc) for loc in ws.locations))

    t0 = time.perf_counter()
    results = asyncio.run(all_of_them())
    seconds = time.perf_counter() - t0
    service.close()
    builds = sum(1 for e in reporter.events if e.kind == "start")
    return {
        "locations": count,
        "builds": builds,
        "envs": len({r.key for r in results}),
        "build_dirs": len(list((cache / "envs" / ".builds").iterdir())),
        "seconds": seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--uv", metavar="PATH", help="uv executable (default: PATH, or install)")
    parser.add_argument("--no-uv", action="store_true", help="measure pip only")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="wsm-envs-bench-"))
    results: Dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        uv = None if args.no_uv else find_uv(args.uv)
        pip_times = cold_builds(tmp, "pip", runs)
        results["cold_pip_s"] = statistics.median(pip_times)
        results["cold_pip_runs"] = pip_times
        if uv:
            uv_on_path(uv, tmp)
            uv_times = cold_builds(tmp, "uv", runs)
            results["cold_uv_s"] = statistics.median(uv_times)
            results["cold_uv_runs"] = uv_times
        else:
            results["cold_uv_s"] = None

        cache = tmp / "cache-warm"
        ws20 = write_workspace(tmp / "warm", [f"pkg-{i:02d}" for i in range(20)])
        service = EnvironmentService(cache)

        async def build_all() -> list:
            ws = load_workspace(ws20)
            return await asyncio.gather(*(service.ensure(loc) for loc in ws.locations))

        t0 = time.perf_counter()
        built = asyncio.run(build_all())
        results["build_20_distinct_s"] = time.perf_counter() - t0
        service.close()
        assert len({r.key for r in built}) == 20
        warm = warm_decision(ws20, cache)
        results["warm_decide_20_ms"] = warm["decide_ms"]
        results["warm_import_ms"] = warm["import_ms"]
        results["warm_hits"] = warm["hits"]
        if not args.quick:
            ready = time_to_ready(ws20, cache)
            results["warm_up_ready_s"] = ready["seconds"]
            results["warm_up_note"] = ready["note"]
        results["same_spec"] = same_spec(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def fmt(v: Any, unit: str) -> str:
        return "-" if v is None else f"{v:.2f} {unit}" if isinstance(v, float) else f"{v} {unit}"

    same = results["same_spec"]
    rows = [
        ("cold build, 1 local package, pip (median)", fmt(results["cold_pip_s"], "s")),
        ("cold build, 1 local package, uv (median)", fmt(results["cold_uv_s"], "s")),
        ("build 20 distinct envs in parallel", fmt(results["build_20_distinct_s"], "s")),
        ("warm: decide reuse for 20 locations", fmt(results["warm_decide_20_ms"], "ms")),
        ("warm: import of the env service", fmt(results["warm_import_ms"], "ms")),
        ("warm: `wsm up` to all ready", fmt(results.get("warm_up_ready_s"), "s")),
        ("20 same-spec locations: builds", f"{same['builds']} ({same['seconds']:.2f} s)"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    if results.get("warm_up_note"):
        print(f"note: {results['warm_up_note']}")
    results["targets"] = {
        "warm_decide_under_50ms": results["warm_decide_20_ms"] < TARGET_DECIDE_MS
        and results["warm_hits"] == 20,
        "same_spec_one_build": same["builds"] == 1 and same["envs"] == 1,
    }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

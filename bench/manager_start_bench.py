"""The manager's own cost at start-up: `wsm up` with N trivial locations, from spawn to
`/readyz` 200.

    python bench/manager_start_bench.py 100             # one run, 100 locations
    python bench/manager_start_bench.py 1 --runs 5      # five runs of one location
    python bench/manager_start_bench.py 100 --idle 20   # and the idle CPU over 20 s
    python bench/manager_start_bench.py 100 --wsm /other/venv/bin/wsm   # another build

Each run writes N locations (one folder each, one `@job`, one `@repository`) into a fresh
temporary folder with private runtime, state and cache dirs, validates it once (a warm
start, as a second `wsm up` is), then starts `wsm up --health 127.0.0.1:0` and polls
`/readyz`. Figures, per run: `health_s` (spawn to the health line), `ready_s` (spawn to
`/readyz` 200: every location ready), the manager's RSS and CPU seconds at that moment,
`/livez` p50/p99 over 200 sequential requests, one `/status` answer's time and, with
`--idle`, the manager's CPU over that many seconds as a percentage of one core. The
process tree is stopped with SIGTERM at the end. A table, then one JSON line.

Wall times on a shared machine are indicative; `manager_cpu_s` (the manager's own CPU
time to all-ready) moves less with the machine's load.
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
from typing import Any, Dict, List, Optional, Tuple

import psutil

REPO = (
    "from workspace_manager import job, repository\n\n\n"
    "@job\ndef hello():\n    pass\n\n\n"
    "@repository\ndef repo():\n    return [hello]\n"
)


def write_workspace(root: Path, n: int) -> None:
    lines = ["load_from:"]
    for i in range(n):
        folder = root / f"l{i}"
        folder.mkdir()
        (folder / "repo.py").write_text(REPO)
        lines += ["  - python_file:", f"      relative_path: l{i}/repo.py"]
        lines += [f"      location_name: l{i}"]
    (root / "workspace.yaml").write_text("\n".join(lines) + "\n")


def _get(port: int, path: str) -> Tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def one_run(wsm: str, n: int, idle: float, poll: float, timeout: float) -> Dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"wsm-start-{n}-"))
    env = dict(os.environ)
    env.update(
        WSM_RUNTIME_DIR=str(root / ".run"),
        WSM_STATE_DIR=str(root / ".state"),
        WSM_CACHE_DIR=str(root / ".cache"),
    )
    env.pop("PYTHONPATH", None)
    proc: Optional[subprocess.Popen] = None
    try:
        write_workspace(root, n)
        subprocess.run([wsm, "validate"], cwd=root, env=env, capture_output=True, check=True)
        started = time.monotonic()
        proc = subprocess.Popen(
            [wsm, "up", "--health", "127.0.0.1:0", "--quiet-output"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: List[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True).start()
        port = None
        while port is None:
            for line in list(lines):
                m = re.search(r"health endpoint on http://[^:]+:(\d+)", line)
                if m:
                    port = int(m.group(1))
            if proc.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError("wsm up exited or never served:\n" + "".join(lines))
            time.sleep(0.002)
        health_s = time.monotonic() - started
        while True:
            try:
                status, _ = _get(port, "/readyz")
            except OSError:
                status = 0
            if status == 200:
                break
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"not all ready within {timeout:g} s")
            time.sleep(poll)
        ready_s = time.monotonic() - started
        manager = psutil.Process(proc.pid)
        cpu = manager.cpu_times()
        rss_mb = manager.memory_info().rss / 2**20
        livez = []
        for _ in range(200):
            t = time.perf_counter()
            _get(port, "/livez")
            livez.append(time.perf_counter() - t)
        livez.sort()
        t = time.perf_counter()
        _get(port, "/status")
        status_ms = (time.perf_counter() - t) * 1000
        idle_pct = None
        if idle:
            time.sleep(2.0)  # the first heartbeats and memory samples after ready
            before = sum(manager.cpu_times()[:2])
            time.sleep(idle)
            idle_pct = (sum(manager.cpu_times()[:2]) - before) / idle * 100
        return {
            "locations": n,
            "health_s": round(health_s, 3),
            "ready_s": round(ready_s, 3),
            "manager_rss_mb": round(rss_mb, 1),
            "manager_cpu_s": round(cpu.user + cpu.system, 3),
            "livez_p50_ms": round(livez[100] * 1000, 2),
            "livez_p99_ms": round(livez[197] * 1000, 2),
            "status_ms": round(status_ms, 1),
            "idle_pct_of_a_core": None if idle_pct is None else round(idle_pct, 2),
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("locations", type=int)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--idle", type=float, default=0.0, help="seconds of idle CPU to measure")
    parser.add_argument("--poll", type=float, default=0.01, help="seconds between /readyz polls")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--wsm", default=str(Path(sys.executable).parent / "wsm"))
    args = parser.parse_args(argv)
    runs = [
        one_run(args.wsm, args.locations, args.idle, args.poll, args.timeout)
        for _ in range(args.runs)
    ]
    keys = list(runs[0])
    print("  ".join(f"{k:>14}" for k in keys))
    for run in runs:
        print("  ".join(f"{str(run[k]):>14}" for k in keys))
    print(json.dumps({"wsm": args.wsm, "runs": runs, "loadavg": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

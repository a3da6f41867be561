"""Fork servers against plain spawns (issue 11, part "fork"): `wsm up` with N trivial
locations, each mode in turn (`WSM_FORKSERVER=off`, then on), the modes interleaved.

    python bench/forkserver_bench.py                 # 1 location x5, 100 locations x2
    python bench/forkserver_bench.py --counts 1 10 100 1000 --rounds 1

Per run: wall time from starting `wsm up` to `/readyz` 200; the median of the manager's own
"ready ... in N ms" (its spawn -> ready of each location); CPU seconds the locations spent
to get ready (user + system of every location process, from /proc: robust to a loaded
machine, unlike wall time); per location USS (pages no other process shares) and PSS, from
/proc/PID/smaps_rollup; the fork servers' own USS; the manager's RSS. Prints a table, then
one JSON line. Figures from a shared machine are indicative.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = """
from workspace_manager import job, repository

@job
def hello():
    pass

@repository
def trivial():
    return [hello]
"""

WSM = str(Path(sys.executable).parent / "wsm")
TICKS = os.sysconf("SC_CLK_TCK")


def _workspace(root: Path, count: int) -> Path:
    lines = ["load_from:"]
    for i in range(count):
        folder = root / f"loc{i}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"repo{i}.py").write_text(REPO)
        lines.append(
            f"  - python_file: {{relative_path: loc{i}/repo{i}.py, location_name: loc{i}}}"
        )
    path = root / "workspace.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rollup(pid: int) -> Dict[str, int]:
    out: Dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        pass
    return out


def _uss(pid: int) -> int:
    r = _rollup(pid)
    return r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)


def _cpu(pid: int, children: bool = False) -> float:
    """User + system seconds of `pid` (and of the children it reaped, with `children`)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12])
        return (own + (int(fields[13]) + int(fields[14]) if children else 0)) / TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def _get(port: int, path: str) -> tuple:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def one_run(count: int, fork: bool, timeout: float = 300.0) -> Dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="wsm-forkbench-"))
    env = dict(os.environ)
    env.update(
        WSM_RUNTIME_DIR=str(root / ".run"),
        WSM_STATE_DIR=str(root / ".state"),
        WSM_CACHE_DIR=str(root / ".cache"),
        WSM_FORKSERVER="on" if fork else "off",
    )
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # locations read cached .pyc, as installed
    path = _workspace(root, count)
    lines: List[str] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [WSM, "up", "-w", str(path), "--no-daemon", "--health", "127.0.0.1:0"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        port: Optional[int] = None
        while port is None:
            for line in list(lines):
                m = re.search(r"health endpoint on http://[^:]+:(\d+)", line)
                if m:
                    port = int(m.group(1))
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError("wsm up did not start:\n" + "".join(lines))
            time.sleep(0.005)
        while _get(port, "/readyz")[0] != 200:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("not ready in time: " + _get(port, "/readyz?verbose")[1][:3000])
            time.sleep(0.01)
        all_ready = time.monotonic() - t0
        status = json.loads(_get(port, "/status")[1])
        pids = [loc["pid"] for loc in status["locations"].values()]
        servers = [p for p in _children(proc.pid) if p not in set(pids)]
        time.sleep(0.5)  # let the output reach us
        ready_ms = [
            int(m.group(1)) for m in (re.search(r" ready .* in (\d+) ms", x) for x in lines) if m
        ]
        uss = [_uss(p) for p in pids]
        pss = [_rollup(p).get("Pss", 0) for p in pids]
        return {
            "count": count,
            "fork": fork,
            "all_ready_s": round(all_ready, 3),
            "ready_ms_median": statistics.median(ready_ms) if ready_ms else None,
            "location_cpu_ms_mean": round(1000 * sum(_cpu(p) for p in pids) / len(pids), 1),
            "uss_mb_mean": round(statistics.mean(uss) / 2**20, 2),
            "pss_mb_mean": round(statistics.mean(pss) / 2**20, 2),
            "servers": len(servers),
            "server_uss_mb": round(sum(_uss(p) for p in servers) / 2**20, 2),
            "manager_rss_mb": round(_rollup(proc.pid).get("Rss", 0) / 2**20, 1),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def fork_latency(requests: int) -> Dict[str, Any]:
    """One fork server on its own: the round trip of a fork request (send, double fork,
    answer), and the CPU the server and its middle processes spend per fork. Each forked child gets EOF on its stdin
    at once and exits (status 3: no bootstrap), as an unanswered fork would."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from workspace_manager.loader import forkserver
    from workspace_manager.loader.launch import make_sdk_dir

    root = Path(tempfile.mkdtemp(prefix="wsm-forklat-"))
    try:
        sdk = make_sdk_dir(str(root))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = forkserver.start_vars(dict(os.environ, PYTHONUNBUFFERED="1"))
        t0 = time.monotonic()
        proc = subprocess.Popen(
            forkserver.argv(sys.executable, sdk, theirs.fileno()),
            pass_fds=(theirs.fileno(),),
            env=env,
            cwd="/",
            start_new_session=True,
        )
        theirs.close()
        json.loads(ours.recv(65536))
        server_start = time.monotonic() - t0
        cpu0 = _cpu(proc.pid, children=True)
        took = []
        devnull = os.open(os.devnull, os.O_RDWR)
        for i in range(requests):
            r, w = os.pipe()
            a, b = socket.socketpair()
            t = time.perf_counter()
            socket.send_fds(ours, [json.dumps({"id": i, "cwd": "/", "env": {}}).encode()],
                            [r, devnull, devnull, b.fileno()])  # fmt: skip
            json.loads(ours.recv(65536))
            took.append((time.perf_counter() - t) * 1000)
            for fd in (r, w):
                os.close(fd)
            a.close()
            b.close()
        cpu = (_cpu(proc.pid, children=True) - cpu0) / requests * 1000
        ours.close()
        proc.wait(10)
        took.sort()
        return {
            "server_start_ms": round(server_start * 1000, 1),
            "fork_round_trip_ms_p50": round(statistics.median(took), 2),
            "fork_round_trip_ms_p90": round(took[int(len(took) * 0.9)], 2),
            "server_cpu_ms_per_fork": round(cpu, 2),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--rounds", type=int, default=0, help="default: 5 for 1, else 2")
    parser.add_argument("--fork-latency", type=int, metavar="N", help="only time N fork requests")
    args = parser.parse_args()
    if args.fork_latency:
        print(json.dumps(fork_latency(args.fork_latency)))
        return
    results: List[Dict[str, Any]] = []
    for count in args.counts:
        rounds = args.rounds or (5 if count == 1 else 2)
        for _ in range(rounds):
            for fork in (False, True):
                results.append(one_run(count, fork))
    cols = [
        "count", "fork", "all_ready_s", "ready_ms_median", "location_cpu_ms_mean",
        "uss_mb_mean", "pss_mb_mean", "servers", "server_uss_mb", "manager_rss_mb",
    ]  # fmt: skip
    print("  ".join(f"{c:>12}" for c in cols))
    for r in results:
        print("  ".join(f"{str(r[c]):>12}" for c in cols))
    summary = {}
    for count in args.counts:
        for fork in (False, True):
            rows = [r for r in results if r["count"] == count and r["fork"] == fork]
            summary[f"{count}_{'fork' if fork else 'spawn'}"] = {
                c: statistics.median(r[c] for r in rows if r[c] is not None)
                for c in cols[2:]
                if any(r[c] is not None for r in rows)
            }
    print(json.dumps({"load_average": os.getloadavg(), "summary": summary, "runs": results}))


if __name__ == "__main__":
    main()

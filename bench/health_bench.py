"""Issue-5 benchmark: health endpoint latency under load, with a hung location.

    python bench/health_bench.py                 # 20 locations, 500 req/s, 5 s per path
    python bench/health_bench.py --quick         # 2 s per path
    python bench/health_bench.py --rate 1000 --duration 10 --locations 50

What it does: writes a workspace of N small locations into a temporary folder, starts a
real `wsm up --health 127.0.0.1:0` (its own session), waits until every location is
ready, then freezes one of them with SIGSTOP (a hung process: its heartbeats go
unanswered, its socket stays open). That location's heartbeat is set to 60 s, so the
manager does not kill and restart it during the run: it stays hung throughout.

A second process (this file with `--client`) then sends GET requests at a fixed rate on an
open-loop schedule (request i is due at t0 + i/rate whether or not earlier ones have
answered), over keep-alive connections from a small pool (a new one opens when all are
busy). For each of /healthz, /readyz and /status in turn: a short warm-up, then the
measured window; last, /healthz again while /metrics is scraped a few times a second
alongside. Latency is counted from the moment a request was due, so a stall anywhere
(server or client) shows instead of being hidden by a waiting client (no coordinated
omission); "service" is from the moment it was sent.

Also: the cost of one /metrics exposition for 50 busy locations, in process (the snapshot
on the manager's loop, the encoding in a worker thread).

Output: a table, then one JSON line. Target: p99 < 5 ms for /healthz, /readyz and /status
(and for /healthz during scrapes).
The exit status is 0 whether or not the target is met; read `all_targets_met`.
Everything started is stopped at the end (also on Ctrl-C and errors) and checked gone.
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
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402
from measure import percentile  # noqa: E402

TARGET_P99_MS = 5.0
TARGET_PATHS = ("/healthz", "/readyz", "/status")
METRICS_RATE = 4.0  # scrapes per second during the last phase
HUNG = "hung"

REPO = """
from workspace_manager import ScheduleDefinition, job, repository, sensor, RunRequest

@job
def job_a(): ...

@job
def job_b(): ...

@sensor(job=job_b)
def a_sensor():
    yield RunRequest(run_key=None, run_config={})

@repository
def repo():
    return [job_a, job_b, ScheduleDefinition(job=job_a, cron_schedule="0 * * * *"), a_sensor]
"""


# -- the client (second process) -----------------------------------------------------------------


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer


async def _request(conn: _Conn, request: bytes) -> int:
    conn.writer.write(request)
    head = await conn.reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    if match:
        await conn.reader.readexactly(int(match.group(1)))
    return status


async def _paced(
    port: int, path: str, rate: float, seconds: float, pool_size: int
) -> Dict[str, Any]:
    """Open-loop GETs of `path` at `rate` per second for `seconds`."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    idle: List[_Conn] = []
    opened = 0

    async def connect() -> _Conn:
        nonlocal opened
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened += 1
        return _Conn(reader, writer)

    for _ in range(pool_size):
        idle.append(await connect())
    latencies: List[float] = []
    service: List[float] = []
    statuses: Dict[int, int] = {}
    errors = 0
    count = int(rate * seconds)
    clock = time.perf_counter
    start = clock() + 0.05

    async def one(due: float) -> None:
        nonlocal errors
        conn = idle.pop() if idle else await connect()
        sent = clock()
        try:
            status = await _request(conn, request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            conn.writer.close()
            return
        done = clock()
        latencies.append(done - due)
        service.append(done - sent)
        statuses[status] = statuses.get(status, 0) + 1
        idle.append(conn)

    tasks = []
    late = 0.0
    for i in range(count):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
        tasks.append(asyncio.ensure_future(one(due)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.writer.close()
    elapsed = clock() - start
    ms = sorted(x * 1000 for x in latencies)
    svc = sorted(x * 1000 for x in service)
    return {
        "path": path,
        "requests": count,
        "answered": len(latencies),
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "achieved_rate": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "connections_opened": opened,
        "p50_ms": percentile(ms, 50) if ms else None,
        "p99_ms": percentile(ms, 99) if ms else None,
        "max_ms": ms[-1] if ms else None,
        "service_p50_ms": percentile(svc, 50) if svc else None,
        "service_p99_ms": percentile(svc, 99) if svc else None,
        "client_late_max_ms": late * 1000,
    }


async def _client(args: argparse.Namespace) -> List[Dict[str, Any]]:
    results = []
    for path in TARGET_PATHS:
        await _paced(args.port, path, args.rate, args.warmup, args.connections)  # warm-up
        results.append(await _paced(args.port, path, args.rate, args.duration, args.connections))
    # /healthz again while a scraper pulls /metrics (a few Prometheus servers' worth)
    probe, scrape = await asyncio.gather(
        _paced(args.port, "/healthz", args.rate, args.duration, args.connections),
        _paced(args.port, "/metrics", METRICS_RATE, args.duration, 1),
    )
    probe["path"] = f"/healthz + /metrics {METRICS_RATE:g}/s"
    results.extend([probe, scrape])
    return results


def client_main(args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(_client(args))), flush=True)
    return 0


# -- the manager under test ----------------------------------------------------------------------


class Run:
    """`wsm up` in its own session, and every process it starts; stopped by `close()`."""

    def __init__(self, root: Path, locations: int) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env.pop("PYTHONPATH", None)
        for name in ("RUNTIME", "STATE", "CACHE"):
            self.env[f"WSM_{name}_DIR"] = str(root / f".wsm-{name.lower()}")
        entries = []
        for i in range(locations):
            name = HUNG if i == locations - 1 else f"loc{i:02d}"
            folder = root / name
            folder.mkdir()
            (folder / "repo.py").write_text(textwrap.dedent(REPO))
            entry: Dict[str, Any] = {"relative_path": f"{name}/repo.py", "location_name": name}
            if name == HUNG:
                entry["supervision"] = {"heartbeat_seconds": 60}
            entries.append({"python_file": entry})
        import yaml

        workspace = root / "workspace.yaml"
        workspace.write_text(yaml.safe_dump({"load_from": entries}, sort_keys=False))
        wsm = shutil.which("wsm", path=str(Path(sys.executable).parent)) or "wsm"
        self.proc = subprocess.Popen(
            [wsm, "up", "-w", str(workspace), "--health", "127.0.0.1:0", "--quiet-output"],
            cwd=root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self.lines: List[str] = []
        self.pids: Set[int] = set()
        self.stopped: Optional[int] = None
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self._wait(self._health_port, 60, "the health endpoint")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _health_port(self) -> Optional[int]:
        if self.proc.poll() is not None:
            raise RuntimeError("wsm up exited:\n" + "\n".join(self.lines))
        for line in self.lines:
            m = re.search(r"health endpoint on http://[^:]+:(\d+)", line)
            if m:
                return int(m.group(1))
        return None

    def _wait(self, check: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")

    def status(self) -> Dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/status")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 120) -> Dict[str, Any]:
        def ready() -> Optional[Dict[str, Any]]:
            st = self.status()
            self.track()
            return st if all(v["state"] == "ready" for v in st["locations"].values()) else None

        return self._wait(ready, timeout, "every location to be ready")

    def track(self) -> None:
        import psutil

        try:
            self.pids.update(c.pid for c in psutil.Process(self.proc.pid).children(True))
        except psutil.Error:
            pass

    def hang(self, pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        self.stopped = pid

    def close(self) -> List[int]:
        """SIGCONT the hung one, SIGTERM wsm up, wait; SIGKILL anything left. Returns the
        processes that had to be killed (empty when the shutdown was clean)."""
        import psutil

        self.track()
        if self.stopped is not None:
            try:
                os.kill(self.stopped, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        left = []
        for pid in sorted(self.pids | {self.proc.pid}):
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
                    p.kill()
            except psutil.Error:
                pass
        measure.kill_group(self.proc)
        return left


# -- /metrics cost, in process -------------------------------------------------------------------


def exposition_cost(locations: int = 50, methods: int = 4) -> Dict[str, float]:
    """Snapshot (on the loop) and encoding (worker thread) of one scrape, best of 10."""
    from workspace_manager.supervisor.metrics import ManagerMetrics, encode

    locs = {
        f"loc{i}": types.SimpleNamespace(
            name=f"loc{i}",
            state="ready",
            restarts=1,
            last_rss=40_000_000,
            pid=1000 + i,
            instance=types.SimpleNamespace(cpu_seconds=2.0),
        )
        for i in range(locations)
    }
    metrics = ManagerMetrics(types.SimpleNamespace(started_at=time.time(), locations=locs))
    for name in locs:
        for method in ("ping", "evaluate_sensor", "get_snapshot", "shutdown")[:methods]:
            for k in range(10):
                metrics.observe_call(name, method, 0.0001 * (k + 1), None)
    snap_ms, enc_ms, size = [], [], 0
    for _ in range(10):
        t0 = time.perf_counter()
        snap = metrics.snapshot()
        t1 = time.perf_counter()
        body, _ = encode(snap)
        t2 = time.perf_counter()
        snap_ms.append((t1 - t0) * 1000)
        enc_ms.append((t2 - t1) * 1000)
        size = len(body)
    return {
        "locations": locations,
        "methods_per_location": methods,
        "snapshot_ms": min(snap_ms),
        "encode_ms": min(enc_ms),
        "bytes": size,
        "lines": body.count(b"\n"),
    }


# -- driver --------------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=500.0, help="requests per second (500)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per path (5)")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per path")
    p.add_argument("--connections", type=int, default=4, help="keep-alive connections (4)")
    p.add_argument("--locations", type=int, default=20, help="locations, one of them hung (20)")
    p.add_argument("--quick", action="store_true", help="2 s per path")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = 2.0
    if args.client:
        return client_main(args)

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    root = Path(tempfile.mkdtemp(prefix="wsm-health-bench-"))
    run: Optional[Run] = None
    client: Optional[subprocess.Popen] = None
    try:
        t0 = time.monotonic()
        run = Run(root, args.locations)
        status = run.wait_ready()
        startup = time.monotonic() - t0
        hung_pid = status["locations"][HUNG]["pid"]
        run.hang(hung_pid)
        client = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                "--port",
                str(run.port),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
                "--warmup",
                str(args.warmup),
                "--connections",
                str(args.connections),
            ],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        out, _ = client.communicate(timeout=60 + 10 * (args.duration + args.warmup))
        if client.returncode != 0:
            raise RuntimeError(f"client failed with status {client.returncode}")
        results = json.loads(out.strip().splitlines()[-1])
        after = run.status()["locations"][HUNG]
        hung_throughout = after["pid"] == hung_pid and _is_stopped(hung_pid)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        killed = run.close() if run is not None else []
        shutil.rmtree(root, ignore_errors=True)
    cost = exposition_cost()
    report(args, results, startup, hung_throughout, after["state"], killed, cost)
    return 0


def _is_stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except OSError:
        return False


def report(
    args: argparse.Namespace,
    results: List[Dict[str, Any]],
    startup: float,
    hung_throughout: bool,
    hung_state: str,
    killed: List[int],
    cost: Dict[str, float],
) -> None:
    print(
        f"wsm up with {args.locations} locations (one SIGSTOPped: {HUNG}), "
        f"{args.rate:g} req/s for {args.duration:g} s per path, open loop, "
        f"{args.connections} keep-alive connections; load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    head = ("path", "p50 ms", "p99 ms", "max ms", "svc p50", "svc p99", "req/s", "statuses")
    rows = [head]
    for r in results:
        rows.append(
            (
                r["path"],
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['max_ms']:.2f}",
                f"{r['service_p50_ms']:.2f}",
                f"{r['service_p99_ms']:.2f}",
                f"{r['achieved_rate']:.0f}",
                " ".join(f"{k}x{v}" for k, v in r["statuses"].items())
                + (f" errors {r['errors']}" if r["errors"] else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print(
            "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
        )
    print(
        f"{HUNG} stayed hung throughout: {hung_throughout} (manager saw it as {hung_state}); "
        f"startup of {args.locations} locations {startup:.1f} s; "
        f"/metrics for {cost['locations']:.0f} busy locations: snapshot {cost['snapshot_ms']:.2f} ms "
        f"on the loop, encoding {cost['encode_ms']:.1f} ms in a worker thread "
        f"({cost['lines']:.0f} lines)"
    )
    if killed:
        print(f"warning: {len(killed)} processes had to be killed at the end: {killed}")
    targets = {
        r["path"]: {
            "p99_ms": r["p99_ms"],
            "target_ms": TARGET_P99_MS,
            "met": r["p99_ms"] < TARGET_P99_MS,
        }
        for r in results
        if r["path"] in TARGET_PATHS or r["path"].startswith("/healthz +")
    }
    summary = {
        "bench": "health",
        "locations": args.locations,
        "rate": args.rate,
        "duration_s": args.duration,
        "connections": args.connections,
        "hung_throughout": hung_throughout,
        "results": results,
        "metrics_exposition": cost,
        "startup_s": startup,
        "left_behind": killed,
        "load_average": os.getloadavg(),
        "targets": targets,
        "all_targets_met": all(t["met"] for t in targets.values()) and hung_throughout,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())

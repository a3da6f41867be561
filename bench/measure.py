"""Timing, percentile, memory and process-cleanup helpers shared by both sides of the bench.

Standard library only (psutil when present): this module also runs inside the
throwaway Dagster virtualenv, which has neither wsm nor psutil.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

try:  # wsm's interpreter has psutil; the Dagster venv may not.
    import psutil
except ImportError:  # pragma: no cover - depends on the interpreter
    psutil = None  # type: ignore[assignment]

#: A trivial wsm repository: one job, one repository (the benches' "trivial location").
TRIVIAL_WSM_REPO = """\
from workspace_manager import job, repository


@job
def noop(context):
    pass


@repository
def repo():
    return [noop]
"""

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100): a value that was really observed."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def time_calls(call: Callable[[], object], count: int, warmup: int = 0) -> Dict[str, float]:
    """Call `call` `count` times; per-call latency percentiles (us) and calls per second."""
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    samples: List[int] = [0] * count
    start = clock()
    for i in range(count):
        t0 = clock()
        call()
        samples[i] = clock() - t0
    total_s = (clock() - start) / 1e9
    us = [s / 1000.0 for s in samples]
    return {
        "count": count,
        "p50_us": percentile(us, 50),
        "p99_us": percentile(us, 99),
        "mean_us": statistics.fmean(us),
        "calls_per_s": count / total_s,
    }


def time_median_ms(call: Callable[[], object], count: int, warmup: int = 1) -> Dict[str, float]:
    """Median, min and max wall time (ms) of `count` calls to `call` after `warmup`."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return {
        "count": count,
        "median_ms": median(samples),
        "min_ms": min(samples),
        "max_ms": max(samples),
    }


def ping_by_placement(
    call: Callable[[], object], server_pid: int, count: int
) -> Optional[Dict[str, Dict[str, float]]]:
    """`call` timed with client and server pinned to one core, then to two different cores.

    A diagnostic: on a small VM the round trip is dominated by where the scheduler puts the
    two processes (a cross-core wake-up costs more than the whole protocol), which explains
    run-to-run swings of the unpinned figure. None without affinity control or two CPUs.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    try:
        threads = [int(t) for t in os.listdir(f"/proc/{server_pid}/task")]
    except OSError:
        return None
    mine = os.sched_getaffinity(0)
    result = {}
    try:
        for label, other in (("same_core", cpus[0]), ("cross_core", cpus[1])):
            os.sched_setaffinity(0, {cpus[0]})
            for tid in threads:
                os.sched_setaffinity(tid, {other})
            result[label] = time_calls(call, count, warmup=100)
    except OSError:
        return None
    finally:
        os.sched_setaffinity(0, mine)
        for tid in threads:
            try:
                os.sched_setaffinity(tid, mine)
            except OSError:
                pass
    return result


def _children_pids(pid: int) -> List[int]:
    if psutil is not None:
        try:
            return [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    found: List[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                kids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        found += kids
        pending += kids
    return found


def rss_of(pid: int) -> int:
    """Resident set size of one process in bytes (0 if it is gone)."""
    if psutil is not None:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return 0
    try:
        with open(f"/proc/{pid}/statm") as f:  # same source psutil reads on Linux
            return int(f.read().split()[1]) * _PAGE_SIZE
    except OSError:
        return 0


def smaps_rollup(pid: int) -> Dict[str, int]:
    """/proc/PID/smaps_rollup as {field: bytes} (Rss, Pss, Private_Clean, ...); {} if gone."""
    out: Dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        pass
    return out


def uss_bytes(pid: int) -> int:
    """Unique set size: Private_Clean + Private_Dirty of smaps_rollup (psutil's USS)."""
    rollup = smaps_rollup(pid)
    return rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)


def _stat_fields(pid: int) -> List[bytes]:
    """The fields of /proc/PID/stat after the name (the name may hold spaces); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return []
    return data[data.rindex(b")") + 2 :].split()


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of one process (its threads, not its children) in seconds; with
    `children`, plus those of the children it has reaped (cutime + cstime). 0 if gone."""
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    """True for a process that exists and is not a zombie."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != b"Z"


def import_time_ms(
    python: str, code: str, runs: int, env: Optional[Dict[str, str]] = None
) -> Dict[str, float]:
    """The imports `code` triggers after the interpreter's start (the top-level `-X
    importtime` entries after `site`, summed), in ms: min and median over `runs`.

    Raises RuntimeError if `code` fails.
    """
    totals = []
    for _ in range(runs):
        done = subprocess.run(
            [python, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env
        )
        if done.returncode != 0:
            raise RuntimeError(f"{python} -c {code!r} failed: {done.stderr[-800:]}")
        total, after_site = 0, False
        for line in done.stderr.splitlines():
            parts = line.split("|")
            if len(parts) != 3 or not line.startswith("import time:"):
                continue
            name = parts[2]
            if name == " site":
                after_site = True
            elif after_site and name.startswith(" ") and not name.startswith("  "):
                total += int(parts[1])
        totals.append(total / 1000)
    return {"min": min(totals), "median": statistics.median(totals)}


def rss_bytes(pid: int) -> int:
    """Resident set size of a process plus its descendants (a location may fork helpers)."""
    return rss_of(pid) + sum(rss_of(child) for child in _children_pids(pid))


def bench_env(**extra: str) -> Dict[str, str]:
    """Our environment for a child, minus PYTHONDONTWRITEBYTECODE.

    Installed packages come with .pyc files; with that variable set (this machine sets it)
    every spawn would compile the loader and the repository from source again. Dropping it
    lets the untimed warm-up round write them, as a deployed install would have.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def bare_import_argv(python: str, path_entries: Sequence[str], module: str) -> List[str]:
    """argv of a bare interpreter that imports `module` with `path_entries` first on sys.path.

    It prints one line once the import is done, then blocks on stdin, so the
    caller can time the import and read the idle RSS before closing stdin.
    """
    inserts = "".join(f"sys.path.insert(0, {p!r}); " for p in reversed(list(path_entries)))
    code = (
        f"import sys; {inserts}import {module}; "
        "sys.stdout.write('imported\\n'); sys.stdout.flush(); sys.stdin.read()"
    )
    return [python, "-c", code]


def spawn(argv: Sequence[str], **kwargs: object) -> subprocess.Popen:
    """Start a child in its own session, so its whole group can be killed at the end."""
    return subprocess.Popen(list(argv), start_new_session=True, **kwargs)  # type: ignore[call-overload]


def measure_bare_import(
    argv: Sequence[str], cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None
) -> Dict[str, float]:
    """Spawn a bare-import interpreter: seconds until it reported the import, and its RSS
    (with its descendants') and USS then. Raises RuntimeError if the import failed."""
    t0 = time.perf_counter()
    proc = spawn(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        elapsed = time.perf_counter() - t0
        if line.strip() != b"imported":
            err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""  # type: ignore[union-attr]
            raise RuntimeError(f"bare import failed: {' '.join(argv)}\n{err}")
        rss, uss = rss_bytes(proc.pid), uss_bytes(proc.pid)
    finally:
        stop(proc)
    return {"seconds": elapsed, "rss_bytes": rss, "uss_bytes": uss}


def stop(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """Stop a child started by `spawn` and everything in its process group; wait for it."""
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc.pid, signal.SIGKILL)  # leftovers in the group, even if the leader exited
    if proc.poll() is None:
        proc.wait(grace_s)


def kill_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL whatever is left of `proc`'s process group (it leads its own session), then
    wait for `proc` itself."""
    _signal_group(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Children:
    """Every process the bench starts, stopped on exit: normal, exception or Ctrl-C."""

    def __init__(self) -> None:
        self._procs: List[subprocess.Popen] = []

    def add(self, proc: subprocess.Popen) -> subprocess.Popen:
        self._procs.append(proc)
        return proc

    def stop_all(self) -> None:
        while self._procs:
            stop(self._procs.pop())

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def sigterm_as_keyboard_interrupt() -> None:
    """Let SIGTERM (and SIGINT, even if ignored by a shell) unwind like Ctrl-C.

    So `finally` blocks stop every child and remove temporary folders.
    """

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def summarize_spawn(
    location: List[Dict[str, float]], bare: List[Dict[str, float]]
) -> Dict[str, float]:
    """Medians of spawn-to-first-answer and bare import, time (ms) and RSS (MB), and overheads."""
    loc_ms = median([r["seconds"] * 1000.0 for r in location])
    bare_ms = median([r["seconds"] * 1000.0 for r in bare])
    loc_mb = median([r["rss_bytes"] / 2**20 for r in location])
    bare_mb = median([r["rss_bytes"] / 2**20 for r in bare])
    return {
        "runs": len(location),
        "spawn_to_first_answer_ms": loc_ms,
        "bare_import_ms": bare_ms,
        "startup_overhead_ms": loc_ms - bare_ms,
        "rss_mb": loc_mb,
        "bare_rss_mb": bare_mb,
        "rss_overhead_mb": loc_mb - bare_mb,
    }


def python_version(python: str) -> str:
    if python == sys.executable:
        return sys.version.split()[0]
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def process_tree(root: int) -> List[int]:
    """`root` and all its descendants, from one scan of /proc.

    A scan of every process's parent (not `/proc/PID/task/TID/children`, which lists only
    the children of one thread): Dagster's code server starts runs from its gRPC threads,
    and its processes may leave the root's session or process group.
    """
    kids: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(b")") + 2 :].split()[1])  # the name may hold spaces
        kids.setdefault(ppid, []).append(int(entry))
    found = [root]
    i = 0
    while i < len(found):
        found += kids.get(found[i], [])
        i += 1
    return found


def tree_rss_bytes(root: int) -> Tuple[int, int]:
    """(summed RSS in bytes, process count) of `root` and its descendants."""
    pids = process_tree(root)
    return sum(rss_of(pid) for pid in pids), len(pids)


class PeakRss:
    """Samples, on a thread, the summed RSS of the process tree under each root (and of
    the roots alone) every `interval_s`; keeps the peaks. Use as a context manager."""

    def __init__(self, root: int, interval_s: float = 0.1) -> None:
        self.root = root
        self.interval_s = interval_s
        self.peak_tree_bytes = 0
        self.peak_root_bytes = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            tree, count = tree_rss_bytes(self.root)
            self.peak_tree_bytes = max(self.peak_tree_bytes, tree)
            self.peak_root_bytes = max(self.peak_root_bytes, rss_of(self.root))
            self.peak_processes = max(self.peak_processes, count)
            self.samples += 1
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def as_dict(self) -> Dict[str, float]:
        return {
            "peak_tree_mb": self.peak_tree_bytes / 2**20,
            "peak_root_mb": self.peak_root_bytes / 2**20,
            "peak_processes": self.peak_processes,
            "samples": self.samples,
        }


def kill_tree(pids: Sequence[int]) -> List[int]:
    """SIGKILL each of `pids` still alive (not a zombie); the ones that were."""
    killed = []
    for pid in pids:
        if not alive(pid):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            pass
    return killed

"""How far a run's start is from the floor: a bare interpreter's start plus the import of
the location's code.

- `wsm job execute` of a trivial job, wall time of the whole command (the CLI's own start,
  the run record, the run process, its end recorded), against the floor;
- a queued run in a running `wsm up`: from the `launch_run` call on the control socket to
  the first line of the job's function (the job writes `time.time()` first), against the
  floor.

    python bench/run_launch_bench.py [--runs 10] [--dont-write-bytecode]   # about 20 s

By default the bytecode caches are warm, as on an installed machine (the first command
writes any `.pyc` missing). With `--dont-write-bytecode` every process (the floor's too)
runs with PYTHONDONTWRITEBYTECODE=1, as some shells and CI set it: `.pyc` files that exist
are still read, none is written, so a checkout with no `__pycache__` in
`workspace_manager/` compiles wsm's own modules at every start (the figures say how many
of its modules had one).

Prints a short table, then one JSON line with every figure (ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

REPO = """
import time
FIRST = None
from workspace_manager import job, repository

@job
def trivial(context):
    first = time.time()
    import os
    with open(os.path.join(os.environ["NOTES"], context.run_id), "w") as f:
        f.write(repr(first))

@repository
def repo():
    return [trivial]
"""


def ms(values: List[float]) -> Dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--dont-write-bytecode",
        action="store_true",
        help="run every process with PYTHONDONTWRITEBYTECODE=1",
    )
    args = parser.parse_args()
    # before this process imports any of it
    compiled = len(list((HERE.parent / "workspace_manager").rglob("__pycache__/*.pyc")))

    from workspace_manager.loader.launch import make_sdk_dir
    from workspace_manager.protocol.client import Client
    from workspace_manager.supervisor import runtime

    tmp = Path(tempfile.mkdtemp(prefix="wsm-run-bench-"))
    code = tmp / "code"
    code.mkdir()
    (code / "bench_runs_repo.py").write_text(textwrap.dedent(REPO))
    notes = tmp / "notes"
    notes.mkdir()
    python = sys.executable  # the location runs on wsm's own interpreter: the same one
    (tmp / "workspace.yaml").write_text(
        "load_from:\n"
        "  - python_file:\n"
        "      relative_path: code/bench_runs_repo.py\n"
        f"      env_vars: {{NOTES: {json.dumps(str(notes))}}}\n"
    )
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # warm bytecode caches, as on any installed machine (a shell may set this; then every
    # start would compile SQLAlchemy from source)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.dont_write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(
        WSM_RUNTIME_DIR=str(tmp / "run"),
        WSM_STATE_DIR=str(tmp / "state"),
        WSM_CACHE_DIR=str(tmp / "cache"),
        NOTES=str(notes),
    )
    wsm = [str(Path(sys.executable).parent / "wsm")]

    # the floor: start the interpreter, import the code (and through it the SDK)
    sdk = make_sdk_dir(str(tmp / "sdk-floor"))
    floor_code = f"import sys; sys.path[:0] = [{sdk!r}, {str(code)!r}]; import bench_runs_repo"
    # this machine is shared: each sample of a figure is taken right after one of the
    # floor, so both see the same load
    floor_execute: List[float] = []
    floor_queued: List[float] = []

    def sample_floor(into: List[float]) -> None:
        t0 = time.perf_counter()
        subprocess.run([python, "-c", floor_code], check=True, env=env, cwd=code)
        into.append(time.perf_counter() - t0)

    sample_floor([])  # warm-up

    execute = []
    subprocess.run([*wsm, "job", "execute", "trivial"], env=env, cwd=tmp, capture_output=True)
    for _ in range(args.runs):
        sample_floor(floor_execute)
        t0 = time.perf_counter()
        done = subprocess.run(
            [*wsm, "job", "execute", "trivial"], env=env, cwd=tmp, capture_output=True, text=True
        )
        execute.append(time.perf_counter() - t0)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1

    up = subprocess.Popen(
        [*wsm, "up"],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    queued: List[float] = []
    to_starting: List[float] = []  # the call -> STARTING (the queue pass, the record)
    to_started: List[float] = []  # STARTING -> the runner's `started` (interpreter, import)
    run_ids: List[tuple] = []
    try:
        os.environ["WSM_RUNTIME_DIR"] = env["WSM_RUNTIME_DIR"]
        key = runtime.manager_key(f"workspace:{tmp / 'workspace.yaml'}")
        deadline = time.monotonic() + 60
        while True:
            record = runtime.find_manager(key)
            if record is not None:
                client = Client(record.control, record.secret, timeout=30)
                status = client.call("status", {})
                if all(loc["state"] == "ready" for loc in status["locations"].values()):
                    break
                client.close()
            if time.monotonic() > deadline:
                print("wsm up did not get ready", file=sys.stderr)
                return 1
            time.sleep(0.1)
        for _ in range(args.runs):
            sample_floor(floor_queued)
            t0 = time.time()
            run = client.call("launch_run", {"job": "trivial"})
            note = notes / run["run_id"]
            while not note.exists() or not note.read_text():
                time.sleep(0.002)
            queued.append(float(note.read_text()) - t0)
            run_ids.append((run["run_id"], t0))
            time.sleep(0.2)  # let the run end: one at a time
        client.close()
        from workspace_manager.storage.sqlite import SqliteStorage

        store = SqliteStorage(tmp / "state" / key / "runs.db", create=False)
        for run_id, t0 in run_ids:
            record = store.get_run(run_id)
            if record.start_time and record.started_at:
                to_starting.append(record.start_time - t0)
                to_started.append(record.started_at - record.start_time)
        store.close()
    finally:
        subprocess.run([*wsm, "down"], env=env, cwd=tmp, capture_output=True)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, 9)

    result = {
        "runs": args.runs,
        "dont_write_bytecode": args.dont_write_bytecode,
        "wsm_pyc_files_before": compiled,
        "floor_interpreter_and_import": ms(floor_execute + floor_queued),
        "job_execute_command": ms(execute),
        "queued_launch_to_first_line": ms(queued),
        "queued_call_to_starting": ms(to_starting),
        "queued_starting_to_job_started": ms(to_started),
    }
    # the median of the paired differences (each sample minus the floor taken just before)
    result["job_execute_over_floor_ms"] = round(
        statistics.median(e - f for e, f in zip(execute, floor_execute)) * 1000, 1
    )
    result["queued_launch_over_floor_ms"] = round(
        statistics.median(q - f for q, f in zip(queued, floor_queued)) * 1000, 1
    )
    result["targets"] = {"job_execute_over_floor_ms": 150, "queued_launch_over_floor_ms": 50}
    print(f"{'what':44} {'median':>9} {'min':>9} {'max':>9}")
    for name in (
        "floor_interpreter_and_import",
        "job_execute_command",
        "queued_launch_to_first_line",
        "queued_call_to_starting",
        "queued_starting_to_job_started",
    ):
        r = result[name]
        print(f"{name:44} {r['median_ms']:>7} ms {r['min_ms']:>6} ms {r['max_ms']:>6} ms")
    print(
        f"wsm job execute over the floor: {result['job_execute_over_floor_ms']} ms (target <= 150)"
    )
    print(
        f"queued launch over the floor:   {result['queued_launch_over_floor_ms']} ms (target <= 50)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

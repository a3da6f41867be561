"""What a location costs at start-up, the loader side only (issue 11, part "loader").

For each interpreter:
- the time `import workspace_manager.sdk` takes, and importing a trivial repository with
  it (`-X importtime`: the imports the probe triggers, summed; min and median of --runs);
- a loader's spawn -> `loaded` (the harness starts it exactly as the manager does);
- the unique memory (USS: Private_Clean + Private_Dirty of /proc/PID/smaps_rollup) of
  --locations loaders that loaded the repository and answered hello, get_snapshot and
  ping, over a bare interpreter that imported the same repository, all running at once
  (pages of the interpreter binary are then shared, as among the locations of `wsm up`).

Usage: python bench/loader_start_bench.py [--python PATH ...] [--runs 15] [--locations 5]
Prints a table, then one JSON line. Figures on a shared machine are indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from workspace_manager.loader.harness import LoaderProcess, file_target
from workspace_manager.loader.launch import make_sdk_dir

REPO = (
    "from workspace_manager import job, repository\n\n@job\ndef j(): ...\n\n"
    "@repository\ndef r():\n    return [j]\n"
)


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a real location reads and writes .pyc files
    env.pop("PYTHONPATH", None)
    return env


def import_ms(python: str, code: str, runs: int) -> Dict[str, float]:
    """The imports `code` triggers after start-up (top-level `-X importtime` entries after
    `site`), in ms: min and median over `runs`."""
    totals = []
    for _ in range(runs):
        done = subprocess.run(
            [python, "-X", "importtime", "-c", code], capture_output=True, text=True, env=_env()
        )
        assert done.returncode == 0, done.stderr
        total, after_site = 0, False
        for line in done.stderr.splitlines():
            parts = line.split("|")
            if len(parts) != 3 or not line.startswith("import time:"):
                continue
            name = parts[2]
            if name.strip() == "site" and name == " site":
                after_site = True
            elif after_site and name.startswith(" ") and not name.startswith("  "):
                total += int(parts[1])
        totals.append(total / 1000)
    return {"min": min(totals), "median": statistics.median(totals)}


def uss_kb(pid: int) -> int:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    return fields["Private_Clean"] + fields["Private_Dirty"]


def loaders(python: str, root: Path, sdk: str, runs: int, count: int) -> Dict[str, Any]:
    repo = root / "repo.py"
    starts: List[float] = []
    for i in range(runs):
        loader = LoaderProcess(
            python, file_target(str(repo)), str(root), location=f"t{i}", env=_env()
        )
        began = time.perf_counter()
        event = loader.start()[1]
        starts.append((time.perf_counter() - began) * 1000)
        assert event == "loaded", loader.stderr_text()
        loader.stop()
    running = []
    bare = subprocess.Popen(
        [
            python,
            "-c",
            f"import sys; sys.path[:0] = [{str(root)!r}, {sdk!r}]; import repo; "
            "print('ok', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_env(),
    )
    try:
        assert bare.stdout is not None and bare.stdout.readline() == b"ok\n"
        for i in range(count):
            loader = LoaderProcess(
                python, file_target(str(repo)), str(root), location=f"m{i}", env=_env()
            )
            running.append(loader)
            assert loader.start()[1] == "loaded", loader.stderr_text()
            client = loader.client()
            client.call("get_snapshot")
            client.call("ping")
            loader.manager_client = client  # type: ignore[attr-defined]
        time.sleep(0.5)
        base = uss_kb(bare.pid)
        over = sorted(uss_kb(loader.pid) - base for loader in running)
    finally:
        for loader in running:
            loader.manager_client.close()  # type: ignore[attr-defined]
            loader.stop()
        assert bare.stdin is not None
        bare.stdin.close()
        bare.wait(10)
    return {
        "spawn_to_loaded_ms_median": statistics.median(starts),
        "spawn_to_loaded_ms_min": min(starts),
        "bare_uss_kb": base,
        "uss_over_bare_kb_median": statistics.median(over),
        "uss_over_bare_kb_max": over[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", action="append")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--locations", type=int, default=5)
    args = parser.parse_args()
    pythons = args.python or [
        p for p in (sys.executable, "/usr/bin/python3") if os.access(p, os.X_OK)
    ]
    results = {}
    with tempfile.TemporaryDirectory(prefix="wsm-lb-", dir="/tmp") as tmp:
        root = Path(tmp)
        (root / "repo.py").write_text(REPO)
        sdk = make_sdk_dir(str(root))
        for python in pythons:
            head = f"import sys; sys.path[:0] = [{str(root)!r}, {sdk!r}]; "
            import_ms(python, head + "import repo", 2)  # writes the .pyc files first
            results[python] = {
                "sdk_import_ms": import_ms(
                    python, head + "import workspace_manager.sdk", args.runs
                ),
                "repo_import_ms": import_ms(python, head + "import repo", args.runs),
                **loaders(python, root, sdk, args.runs, args.locations),
            }
    print(
        f"{'interpreter':34} {'sdk import ms':>14} {'repo import ms':>15} "
        f"{'spawn->loaded ms':>17} {'USS over bare kB':>17} {'loader USS kB':>14}"
    )
    for python, r in results.items():
        print(
            f"{python:34} {r['sdk_import_ms']['min']:6.1f} ({r['sdk_import_ms']['median']:5.1f}) "
            f"{r['repo_import_ms']['min']:7.1f} ({r['repo_import_ms']['median']:5.1f}) "
            f"{r['spawn_to_loaded_ms_median']:17.1f} {r['uss_over_bare_kb_median']:17.0f} "
            f"{r['uss_over_bare_kb_median'] + r['bare_uss_kb']:14.0f}"
        )
    print("(import: min (median) over the runs; spawn->loaded: median; USS: median of the loaders)")
    print(json.dumps({"bench": "loader_start", "results": results}))


if __name__ == "__main__":
    main()

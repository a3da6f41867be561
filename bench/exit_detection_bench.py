"""How fast `wsm up` sees a location's process exit, while a child of it holds its pipes.

The location is the crasher of issue 8: an ordinary child (`sleep`) inherits stdout and
stderr, and the loader calls `os._exit(1)` one second after it loads, first writing the
time it does so. Heartbeats are 5 s, so only a real exit detection can be fast (before
pidfds, the exit was seen only by missed heartbeats, ~12 s). The latency is the time of the
`ready -> backoff` transition in /status minus the time the loader wrote just before exiting.

    python bench/exit_detection_bench.py [--crashes 10]      # about 3 s per crash

Prints one line per crash, then one JSON line: median, max and every latency in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

REPO = """
import os, subprocess, threading, time
subprocess.Popen(["sleep", "1001"])
def crash():
    time.sleep(1.0)
    with open(os.environ["EXITFILE"], "a") as f:
        f.write(f"{time.time()}\\n")
    os._exit(1)
threading.Thread(target=crash, daemon=True).start()
from workspace_manager import job, repository
@job
def noop(): ...
@repository
def crasher_repo():
    return [noop]
"""

WORKSPACE = """
load_from:
  - python_file: {relative_path: crasher/repo.py, location_name: crasher}
supervision:
  heartbeat_seconds: 5
  max_restarts: 1000
  backoff_initial_seconds: 0.5
  backoff_max_seconds: 0.5
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crashes", type=int, default=10)
    args = parser.parse_args()
    wsm = str(Path(sys.executable).parent / "wsm")
    with tempfile.TemporaryDirectory(prefix="wsm-exitbench-") as tmp:
        root = Path(tmp)
        (root / "crasher").mkdir()
        (root / "crasher" / "repo.py").write_text(textwrap.dedent(REPO))
        (root / "workspace.yaml").write_text(WORKSPACE)
        exits = root / "exits"
        env = dict(
            os.environ,
            EXITFILE=str(exits),
            WSM_RUNTIME_DIR=str(root / "run"),
            WSM_STATE_DIR=str(root / "state"),
            WSM_CACHE_DIR=str(root / "cache"),
        )
        up = subprocess.Popen(
            [wsm, "up", "--health", "127.0.0.1:0", "--quiet-output"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        port: List[int] = []
        threading.Thread(target=_read_port, args=(up, port), daemon=True).start()
        try:
            latencies = _measure(port, exits, args.crashes)
        finally:
            up.terminate()
            up.wait(30)
    for i, ms in enumerate(latencies, 1):
        print(f"crash {i}: exit seen after {ms:.1f} ms")
    print(
        json.dumps(
            {
                "exit_detection_ms_median": round(statistics.median(latencies), 1),
                "exit_detection_ms_max": round(max(latencies), 1),
                "latencies_ms": [round(x, 1) for x in latencies],
            }
        )
    )


def _read_port(up: subprocess.Popen, port: List[int]) -> None:
    assert up.stdout is not None
    for line in up.stdout:
        m = re.search(r"health endpoint on http://[^:]+:(\d+)", line)
        if m:
            port.append(int(m.group(1)))


def _measure(port: List[int], exits: Path, crashes: int) -> List[float]:
    deadline = time.monotonic() + 30
    while not port:
        if time.monotonic() > deadline:
            raise SystemExit("wsm up did not start")
        time.sleep(0.05)
    seen: Dict[float, float] = {}  # transition time -> latency in ms
    deadline = time.monotonic() + 10 * crashes + 30
    while len(seen) < crashes and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _status(port[0])
        if status is None or not exits.exists():
            continue
        died = [float(x) for x in exits.read_text().split()]
        crashed = [
            t["at"]
            for t in status["locations"]["crasher"]["transitions"]
            if t["from"] == "ready" and t["to"] == "backoff"
        ]
        # /status keeps the last 10 transitions: pair each crash with the exit just before it
        for at in crashed:
            before = [d for d in died if d <= at]
            if before:
                seen[at] = (at - max(before)) * 1000
    return [seen[at] for at in sorted(seen)][:crashes]


def _status(port: int) -> Optional[dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


if __name__ == "__main__":
    main()

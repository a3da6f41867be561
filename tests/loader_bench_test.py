"""Many pings in a row on one connection to a real loader, under each interpreter (pytest -m slow).

A stress check, not a measurement: every answer must come back right. Latency and throughput
are measured by `bench/run.py` (the rules: speed in bench/, never as a timed assertion).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

import pytest

from workspace_manager.loader.harness import LoaderProcess, file_target

REPO = "from workspace_manager import job, repository\n\n@job\ndef j(): ...\n\n@repository\ndef r():\n    return [j]\n"

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("python", [sys.executable, "/usr/bin/python3"])
def test_ping_latency_and_throughput(python):
    if not os.path.exists(python):
        pytest.skip(f"no {python}")
    rundir = tempfile.mkdtemp(prefix="wsm-b", dir="/tmp")
    with open(os.path.join(rundir, "repo.py"), "w") as f:
        f.write(REPO)
    loader = LoaderProcess(
        python, file_target(os.path.join(rundir, "repo.py")), rundir, location="bench"
    )
    try:
        assert loader.start()[1] == "loaded"
        with loader.client() as client:
            expected = client.call("ping")
            for _ in range(2000):  # warm up
                assert client.call("ping") == expected
            rounds = []
            for _ in range(7):
                n = 5000
                latencies = []
                t0 = time.perf_counter()
                for _ in range(n):
                    t = time.perf_counter()
                    answer = client.call("ping")
                    latencies.append(time.perf_counter() - t)
                    assert answer == expected
                rate = n / (time.perf_counter() - t0)
                latencies.sort()
                rounds.append((latencies[n // 2] * 1e6, rate))
        best_p50 = min(p50 for p50, _ in rounds)
        best_rate = max(rate for _, rate in rounds)
        print(
            f"\n{python}: p50 {best_p50:.0f} us, {best_rate:.0f} calls/s (best of {len(rounds)} rounds)"
        )
    finally:
        loader.stop()
        shutil.rmtree(rundir, ignore_errors=True)

"""bench/locks_bench.py end to end on two locked environments: offline, every figure there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "locks_bench.py"


@pytest.mark.slow
def test_locks_bench_reports_builds_sharing_and_reuse() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--envs", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["cold_build"]) == {"uv", "pip"}
    for build in result["cold_build"].values():
        assert build["seconds"] > 0 and build["apparent_bytes"] > 0
    shared = result["shared"]
    assert 0 < shared["disk_used_bytes"] and shared["sum_of_sizes_bytes"] > 0
    assert result["decide"]["hits"] == 2  # both environments found built, none rebuilt

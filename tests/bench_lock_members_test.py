"""bench/lock_members_bench.py end to end on three members of one uv workspace: offline,
every figure there, and the one it exists for (re-locking for one member changes one key)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "lock_members_bench.py"


@pytest.mark.slow
def test_lock_members_bench_reports_reuse_and_one_changed_key() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--members", "3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["decide"]["hits"] == 3  # every member's environment found built
    assert result["changed_keys"] == ["m00"]  # only the re-locked member's
    assert result["decide_after_relock"]["hits"] == 2
    for lock in ("own_lock", "large_lock"):
        assert result[lock]["first_ms"] > 0 and result[lock]["next_ms"] > 0
    assert result["uv_export_one_member_ms"] > 0

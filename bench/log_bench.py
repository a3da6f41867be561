"""Cost of one location log line: written, and dropped while the disk is full.

    python bench/log_bench.py [--lines N]

Prints one JSON line: lines per second and microseconds per line for a normal write
(100-byte lines, rotation every 10 MiB) and for a write that fails with ENOSPC (the
failing system call is simulated; a real full tmpfs behaves the same, see
tests/disk_full_test.py). Under a second with the default 200,000 lines.
"""

from __future__ import annotations

import argparse
import errno
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

from workspace_manager.supervisor import logs


def _rate(log: logs.LocationLog, lines: int) -> dict:
    line = b"x" * 99 + b"\n"
    start = time.perf_counter()
    for _ in range(lines):
        log.write(line)
    seconds = time.perf_counter() - start
    log.close()
    return {"lines_per_second": round(lines / seconds), "us_per_line": seconds / lines * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        written = _rate(logs.LocationLog(Path(folder) / "a.log"), args.lines)

        def full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        with mock.patch.object(logs.os, "write", full):
            dropped = _rate(logs.LocationLog(Path(folder) / "b.log"), args.lines)
    print(json.dumps({"written": written, "dropped_disk_full": dropped}))


if __name__ == "__main__":
    main()

"""What checking a location's interpreter costs at start-up: one probe (an interpreter
start), against the cached answer a warm start reads from `interpreters.json`.

    .venv/bin/python bench/interpreter_check.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from workspace_manager.envs.interpreters import InterpreterCache, _probe
from workspace_manager.envs.paths import CacheLayout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    own = os.path.realpath(sys.executable)
    started = time.perf_counter()
    for _ in range(args.rounds):
        _probe(own)
    cold = (time.perf_counter() - started) / args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        layout = CacheLayout.at(Path(tmp))
        InterpreterCache(layout).check(own)
        started = time.perf_counter()
        for _ in range(args.rounds * 10):
            InterpreterCache(layout).check(own)  # as a new manager would: reads the file
        warm = (time.perf_counter() - started) / (args.rounds * 10)
    print(f"probe (one interpreter start): {cold * 1000:.1f} ms")
    print(f"cached check (stat + read interpreters.json): {warm * 1000:.3f} ms")


if __name__ == "__main__":
    main()

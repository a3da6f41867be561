"""wsm's performance benchmark, side by side with Dagster's code server (issue 2).

Run: `python bench/run.py [--quick] [--no-dagster]`. Prints a table, then one
JSON line with every figure. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dagster_location  # noqa: E402
import gen_repo  # noqa: E402
import measure  # noqa: E402

#: figure -> (limit, "max" | "min"): our targets from issue 2.
TARGETS: Dict[str, Tuple[float, str]] = {
    "ping_p50_us": (60.0, "max"),
    "ping_calls_per_s": (15000.0, "min"),
    "snapshot_ms": (30.0, "max"),
    "startup_overhead_ms": (60.0, "max"),
    "rss_overhead_mb": (8.0, "max"),
}


def counts(quick: bool) -> Dict[str, Dict[str, int]]:
    if quick:
        return {
            "wsm": {"runs": 3, "pings": 3000, "snapshots": 5},
            "dagster": {"runs": 2, "pings": 200, "snapshots": 1},
        }
    return {
        "wsm": {"runs": 10, "pings": 20000, "snapshots": 15},
        "dagster": {"runs": 10, "pings": 1000, "snapshots": 3},
    }


def flatten(side: Optional[Dict]) -> Dict[str, float]:
    """The headline figures of one side, under the names TARGETS uses."""
    if not side:
        return {}
    spawn = side["spawn"]
    flat = {
        "ping_p50_us": side["ping"]["p50_us"],
        "ping_p99_us": side["ping"]["p99_us"],
        "ping_calls_per_s": side["ping"]["calls_per_s"],
        "snapshot_ms": side["snapshot"]["median_ms"],
        "spawn_to_first_answer_ms": spawn["spawn_to_first_answer_ms"],
        "bare_import_ms": spawn["bare_import_ms"],
        "startup_overhead_ms": spawn["startup_overhead_ms"],
        "rss_mb": spawn["rss_mb"],
        "bare_rss_mb": spawn["bare_rss_mb"],
        "rss_overhead_mb": spawn["rss_overhead_mb"],
    }
    for placement in ("same_core", "cross_core"):
        if placement in side.get("ping_by_placement", {}):
            flat[f"ping_p50_{placement}_us"] = side["ping_by_placement"][placement]["p50_us"]
    if "ping_one_channel" in side:
        flat["ping_one_channel_p50_us"] = side["ping_one_channel"]["p50_us"]
        flat["snapshot_deferred_ms"] = side["snapshot_deferred"]["median_ms"]
    return flat


def target_verdicts(ours: Dict[str, float]) -> Dict[str, bool]:
    verdicts = {}
    for name, (limit, kind) in TARGETS.items():
        value = ours[name]
        verdicts[name] = value <= limit if kind == "max" else value >= limit
    return verdicts


def ratio(name: str, ours: Optional[float], theirs: Optional[float]) -> Optional[float]:
    """How many times better wsm is (>1: wsm wins); None when not meaningful."""
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if name == "ping_calls_per_s" else theirs / ours


ROWS: List[Tuple[str, str, str]] = [
    # (key, label, format)
    ("ping_p50_us", "ping p50 (us)", "{:.1f}"),
    ("ping_p99_us", "ping p99 (us)", "{:.1f}"),
    ("ping_calls_per_s", "ping calls/s, one client", "{:.0f}"),
    ("ping_p50_same_core_us", "  wsm ping p50, pinned to one core (us)", "{:.1f}"),
    ("ping_p50_cross_core_us", "  wsm ping p50, pinned to two cores (us)", "{:.1f}"),
    ("ping_one_channel_p50_us", "  dagster ping p50, reused channel (us)", "{:.1f}"),
    ("snapshot_ms", "get_snapshot median (ms)", "{:.1f}"),
    ("snapshot_deferred_ms", "  dagster snapshot, job refs only (ms)", "{:.1f}"),
    ("spawn_to_first_answer_ms", "spawn to first answered ping (ms)", "{:.1f}"),
    ("bare_import_ms", "bare interpreter import (ms)", "{:.1f}"),
    ("startup_overhead_ms", "startup overhead (ms)", "{:.1f}"),
    ("rss_mb", "idle location RSS (MB)", "{:.1f}"),
    ("bare_rss_mb", "bare interpreter RSS (MB)", "{:.1f}"),
    ("rss_overhead_mb", "RSS overhead (MB)", "{:.1f}"),
]


def table(ours: Dict[str, float], theirs: Dict[str, float], verdicts: Dict[str, bool]) -> str:
    def fmt(fmt_: str, value: Optional[float]) -> str:
        return "-" if value is None else fmt_.format(value)

    header = f"{'figure':<40} {'wsm':>10} {'target':>10} {'':3} {'dagster':>10} {'wsm better':>11}"
    lines = [header, "-" * len(header)]
    for key, label, fmt_ in ROWS:
        mine, other = ours.get(key), theirs.get(key)
        target, verdict = "", ""
        if key in TARGETS:
            limit, kind = TARGETS[key]
            target = ("<= " if kind == "max" else ">= ") + f"{limit:g}"
            verdict = "ok" if verdicts[key] else "MISS"
        r = ratio(key, mine, other) if mine is not None else None
        lines.append(
            f"{label:<40} {fmt(fmt_, mine):>10} {target:>10} {verdict:3} "
            f"{fmt(fmt_, other):>10} {fmt('{:.1f}x', r):>11}"
        )
    return "\n".join(lines)


def run_dagster(
    args: argparse.Namespace, repo_file: Path, n: Dict[str, int]
) -> Tuple[Optional[Dict], Optional[str]]:
    python = dagster_location.ensure_venv(args.dagster_venv, log=lambda m: print(m, flush=True))
    if python is None:
        return None, "dagster could not be installed"
    print(f"measuring dagster ({python}) ...", flush=True)
    try:
        return dagster_location.run(python, repo_file, **n), None
    except RuntimeError as exc:
        return None, str(exc)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and calls (~1 minute)")
    parser.add_argument("--no-dagster", action="store_true", help="measure wsm only")
    parser.add_argument(
        "--dagster-venv",
        type=Path,
        default=dagster_location.DEFAULT_VENV,
        help=f"throwaway venv for Dagster, built once (default {dagster_location.DEFAULT_VENV})",
    )
    args = parser.parse_args(argv)
    measure.sigterm_as_keyboard_interrupt()
    n = counts(args.quick)
    shape = gen_repo.RepoShape()
    load_start = os.getloadavg()[0]
    if load_start > 0.5:
        print(
            f"note: load average {load_start:.2f} before start; figures will be noisy", flush=True
        )
    try:
        with tempfile.TemporaryDirectory(prefix="wsm-bench-repos-") as tmp:
            repos = gen_repo.generate(Path(tmp), shape)
            import wsm_location  # here: a missing loader should not stop --help or gen_repo

            print(f"measuring wsm ({sys.executable}) ...", flush=True)
            wsm = wsm_location.measure_all(repos.wsm_file, **n["wsm"])
            dagster: Optional[Dict] = None
            dagster_error: Optional[str] = "skipped (--no-dagster)"
            if not args.no_dagster:
                dagster, dagster_error = run_dagster(args, repos.dagster_file, n["dagster"])
    except KeyboardInterrupt:
        print("interrupted; every started process was stopped", file=sys.stderr)
        return 130
    ours, theirs = flatten(wsm), flatten(dagster)
    verdicts = target_verdicts(ours)
    print()
    print(
        f"repository: {shape.jobs} jobs, {shape.schedules} schedules, {shape.sensors} sensors; "
        f"python {wsm['python']}; {os.cpu_count()} CPUs"
        + (f"; dagster {dagster['version']}" if dagster else "")
    )
    print(table(ours, theirs, verdicts))
    if dagster is None:
        print(f"dagster: {dagster_error}")
    summary = {
        "repository": {"jobs": shape.jobs, "schedules": shape.schedules, "sensors": shape.sensors},
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "loadavg_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "wsm": ours,
        "dagster": theirs or None,
        "dagster_error": None if dagster else dagster_error,
        "dagster_version": dagster["version"] if dagster else None,
        "wsm_better_by": {k: ratio(k, ours.get(k), theirs.get(k)) for k in ours if k in theirs},
        "targets": verdicts,
        "all_targets_met": all(verdicts.values()),
        "details": {"wsm": wsm, "dagster": dagster},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`wsm status`: the running manager's locations, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from workspace_manager.cli import control_client, targets


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="state of the running manager's locations")
    targets.add_target_args(p, code=False)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    status = control_client.call(args, "status")
    if args.json:
        json.dump(status, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(
        f"manager pid {status['pid']}  {status['status']}  up {_duration(status['uptime_seconds'])}"
        + (f"  health http://{status['health']}" if status.get("health") else "")
    )
    rows = [("LOCATION", "STATE", "PID", "PYTHON", "RESTARTS", "UPTIME", "RSS", "LAST ERROR")]
    for name, loc in status["locations"].items():
        rows.append(
            (
                name,
                loc["state"],
                str(loc["pid"] or "-"),
                loc["python"] or "-",
                str(loc["restarts"]),
                _duration(loc["uptime_seconds"]),
                _size(loc["rss_bytes"]),
                _short(loc.get("error")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _size(n: Optional[int]) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}M"


def _short(text: Any, limit: int = 60) -> str:
    if not text:
        return ""
    line = str(text).strip().splitlines()[-1] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"

"""`wsm status`: the running manager's locations, as a table or JSON.

The table fits a terminal: the last column (the latest error, in a few words) takes what
width is left, and states are coloured on a terminal only (never in a pipe, nor with
NO_COLOR set). `--json` prints the manager's status document unchanged: the same one
`GET /status` answers (`http.view.status_document`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

from workspace_manager.cli import control_client, targets
from workspace_manager.cli.colours import COLOURS
from workspace_manager.cli.table import cell as one_cell
from workspace_manager.cli.table import clip, pad, terminal_width
from workspace_manager.cli.table import width as text_width

# typing for the type checkers only (they take any name TYPE_CHECKING as true): `wsm
# status` imports this module, and typing costs ~5 ms of its start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence

HEADERS = ("LOCATION", "STATE", "PID", "PYTHON", "RESTARTS", "UPTIME", "RSS", "LAST ERROR")
_RIGHT = {2, 4, 5, 6}  # numbers line up on the right
_MAX_NAME = 40
_MIN_NAME = 12
_PIPE_ERROR_WIDTH = 60  # the error column when the width is unknown (a pipe)
_MIN_ERROR_WIDTH = 20
_OVERALL = {"ok": "32", "starting": "36", "degraded": "33"}
_BAD_STATES = ("backoff", "error", "failed")
_RESTART_SUFFIX = re.compile(r";\s*restarting in [0-9.]+s$")


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="state of the running manager's locations")
    targets.add_target_args(p, code=False)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    status = control_client.call(args, "status")
    if args.json:
        import json

        json.dump(status, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    tty = _isatty(sys.stdout)
    colour = tty and not os.environ.get("NO_COLOR")
    width = terminal_width(sys.stdout) if tty else None
    sys.stdout.write(render(status, colour=colour, width=width))
    return 0


def render(status: Dict[str, Any], colour: bool = False, width: Optional[int] = None) -> str:
    """The header line and the table; `width` is the terminal's (None: not a terminal)."""
    paint = _painter(colour)
    head = [
        f"manager pid {status.get('pid', '?')}",
        *target_words(status.get("target") or {}),
        paint(str(status.get("status", "?")), _OVERALL.get(str(status.get("status")), "0")),
        f"up {duration(status.get('uptime_seconds'))}",
    ]
    if status.get("health"):
        head.append(f"health http://{status['health']}")
    lines = ["  ".join(head)]

    locations: Dict[str, Dict[str, Any]] = status.get("locations") or {}
    rows = [_row(name, loc) for name, loc in locations.items()]
    widths = [max(text_width(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS) - 1)]
    used = sum(widths) + 2 * (len(widths))
    if width is not None and used + _MIN_ERROR_WIDTH > width - 1:
        # a narrow terminal: long location names give way before the error does
        name_width = max(_MIN_NAME, widths[0] - (used + _MIN_ERROR_WIDTH - (width - 1)))
        if name_width < widths[0]:
            rows = [(short(r[0], name_width), *r[1:]) for r in rows]
            used -= widths[0] - name_width
            widths[0] = name_width
    room = _PIPE_ERROR_WIDTH if width is None else max(_MIN_ERROR_WIDTH, width - 1 - used)
    lines.append(_line(HEADERS, widths, room))
    for row, loc in zip(rows, locations.values()):
        state = str(loc.get("state") or "?")
        cells = list(row)
        cells[1] = paint(row[1].ljust(widths[1]), COLOURS.get(state, "0"))
        if loc.get("reload_error") and state == "ready":
            tone = COLOURS["backoff"]  # serving, but its new code did not load
        elif state not in _BAD_STATES and not loc.get("error"):
            tone = "2"  # recovered: a past error, dimmed
        else:
            tone = COLOURS.get(state, "0")
        cells[-1] = paint(short(row[-1], room), tone)
        lines.append(_line(cells, widths, room, painted=True))
    if status.get("daemon"):  # under the table: scripts read the table's lines from the 2nd
        lines.append(daemon_line(status["daemon"]))
    return "\n".join(lines) + "\n"


def daemon_line(daemon: Dict[str, Any], now: Optional[float] = None) -> str:
    """`daemon on (last loop 2s ago)  runs: 1 queued, 2 started, 40 success  queue 1`"""
    now = time.time() if now is None else now
    if daemon.get("enabled"):
        last = daemon.get("last_loop")
        ago = f" (last loop {duration(now - last)} ago)" if isinstance(last, (int, float)) else ""
        words = [f"daemon on{ago}"]
    else:
        words = ["daemon off"]
    counts = daemon.get("runs") or {}
    shown = [f"{n} {status.lower()}" for status, n in counts.items() if n]
    words.append("runs: " + (", ".join(shown) if shown else "none"))
    if daemon.get("queue_length") is not None:
        words.append(f"queue {daemon['queue_length']}")
    if daemon.get("in_progress") is not None:
        words.append(f"in progress {daemon['in_progress']}")
    return "  ".join(words)


def _row(name: str, loc: Dict[str, Any]) -> Sequence[str]:
    return (
        short(name, _MAX_NAME),
        str(loc.get("state") or "?"),
        str(loc.get("pid") or "-"),
        str(loc.get("python") or "-"),
        str(loc.get("restarts", 0)),
        duration(loc.get("uptime_seconds")),
        size(loc.get("rss_bytes")),
        _down(loc) + last_error(loc),
    )


def _down(loc: Dict[str, Any]) -> str:
    """`down 3m05s: ` before the error of a location that is being retried."""
    seconds = loc.get("down_seconds")
    if loc.get("state") == "error" or not isinstance(seconds, (int, float)):
        return ""  # in `error` the error itself matters, and stays until fixed
    return f"down {duration(seconds)}: "


def _line(cells: Sequence[str], widths: List[int], room: int, painted: bool = False) -> str:
    out = []
    for i, (cell, w) in enumerate(zip(cells, widths)):
        if painted and i == 1:
            out.append(cell)  # padded before painting: escapes have no width
        else:
            out.append(pad(cell, w, right=i in _RIGHT))  # by terminal columns
    last = cells[-1] if painted else short(cells[-1], room)
    return ("  ".join(out) + "  " + last).rstrip()


def last_error(loc: Dict[str, Any]) -> str:
    """The current error; on a ready row a failed reload, else the last error marked as past
    with its time ("recovered; 12:03:04: ..." when ready, "earlier; ..." while it starts
    again), never a bare old error."""
    if loc.get("error"):
        return str(loc["error"])
    failed = loc.get("reload_error")
    if failed and loc.get("state") == "ready":
        return f"reload failed {clock(failed.get('at'))}: {failed.get('error') or ''}"
    state = loc.get("state")
    for t in reversed(loc.get("transitions") or []):
        if t.get("to") in _BAD_STATES and t.get("reason"):
            reason = _RESTART_SUFFIX.sub("", str(t["reason"]))
            if state in _BAD_STATES:
                return reason
            past = "recovered" if state == "ready" else "earlier"
            return f"{past}; {clock(t.get('at'))}: {reason}"
    return ""


def clock(at: Any) -> str:
    """A past moment in local time: `12:03:04` today, `05-01 12:03` before."""
    if not isinstance(at, (int, float)):
        return "?"
    then = time.localtime(at)
    if time.strftime("%Y-%m-%d", then) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", then)
    return time.strftime("%m-%d %H:%M", then)


def target_words(target: Dict[str, Any]) -> List[str]:
    """What the manager runs, as the header says it: `workspace PATH`, `file PATH`..."""
    if target.get("workspace"):
        return [f"workspace {target['workspace']}"]
    attribute = f" (attribute {target['attribute']})" if target.get("attribute") else ""
    if target.get("python_file"):
        return [f"file {target['python_file']}{attribute}"]
    if target.get("module_name"):
        return [f"module {target['module_name']}{attribute} in {target.get('working_directory')}"]
    return []


def short(text: Any, limit: int) -> str:
    """One line of at most `limit` terminal columns: whitespace collapsed, control
    characters escaped, cut with an ellipsis."""
    if not text:
        return ""
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return clip(one_cell(lines[-1] if lines else ""), max(limit, 1))


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def size(n: Optional[int]) -> str:
    if n is None:
        return "-"
    if n >= 2**30:
        return f"{n / 2**30:.1f}G"
    return f"{n / 2**20:.1f}M"


def _painter(colour: bool):
    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if colour and text else text

    return paint


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False

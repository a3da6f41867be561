"""`wsm status`: the table from a scripted status answer, then a real manager read through a
pipe (plain), a pseudo-terminal (colour, fitted to its width) and --json (the answer as is)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from typing import Any, Dict, List

import pytest
from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp, wait_for, wsm_argv

from workspace_manager.cli.status import HEADERS, duration, last_error, render, short, size

ANSI = re.compile(r"\x1b\[[0-9;]*m")

LONG_ERROR = (
    "Traceback (most recent call last):\n  File 'repo.py', line 1\n"
    "ModuleNotFoundError: No module named 'does_not_exist_anywhere_in_this_world_or_the_next'"
)


def status_answer() -> Dict[str, Any]:
    return {
        "status": "degraded",
        "pid": 4321,
        "workspace": "/w/workspace.yaml",
        "target": {"workspace": "/w/workspace.yaml"},
        "uptime_seconds": 3725.0,
        "health": "127.0.0.1:8765",
        "locations": {
            "team_a": {
                "state": "ready",
                "pid": 1001,
                "python": "3.11.2",
                "restarts": 2,
                "uptime_seconds": 65.2,
                "rss_bytes": 23_000_000,
                "error": None,
                "transitions": [
                    {
                        "at": time.time() - 70,
                        "to": "backoff",
                        "reason": "killed by SIGKILL; restarting in 0.58s",
                    },
                    {"to": "starting", "reason": "restart"},
                    {"to": "ready", "reason": "1 repository"},
                ],
            },
            "a_rather_long_location_name": {
                "state": "error",
                "pid": None,
                "python": None,
                "restarts": 0,
                "uptime_seconds": None,
                "rss_bytes": None,
                "error": LONG_ERROR,
                "transitions": [],
            },
            "remote_team": {"state": "backoff", "restarts": 12, "error": "connection refused"},
        },
    }


def table(text: str) -> List[str]:
    return text.splitlines()[1:]  # after the manager's line


def test_plain_table_has_every_column_aligned() -> None:
    out = render(status_answer())
    assert not ANSI.search(out)
    head, *rows = table(out)
    assert head.split() == [
        "LOCATION",
        "STATE",
        "PID",
        "PYTHON",
        "RESTARTS",
        "UPTIME",
        "RSS",
        "LAST",
        "ERROR",
    ]
    assert (
        out.splitlines()[0] == "manager pid 4321  workspace /w/workspace.yaml  degraded  up 1h02m  "
        "health http://127.0.0.1:8765"
    )
    state_col = head.index("STATE")
    python_col = head.index("PYTHON")
    error_col = head.index("LAST ERROR")
    for row in rows:
        assert row[state_col - 2 : state_col] == "  " and row[state_col] != " "
        assert row[python_col - 2 : python_col] == "  " and row[python_col] != " "
        assert row[error_col - 2 : error_col] == "  "
    a, long, remote = rows
    assert a.split()[:8] == [
        "team_a",
        "ready",
        "1001",
        "3.11.2",
        "2",
        "1m05s",
        "21.9M",
        "recovered;",
    ]
    # recovered: the last failure as the past, with its time, without the delay
    assert re.search(r"recovered; \d\d:\d\d:\d\d: killed by SIGKILL$", a)
    assert long[error_col:].startswith("ModuleNotFoundError: No module named")
    assert long.endswith("…") and len(long[error_col:]) == 60  # a pipe: 60 characters
    assert remote.split()[:7] == ["remote_team", "backoff", "-", "-", "12", "-", "-"]


def test_the_error_column_takes_the_terminal_width_that_is_left() -> None:
    for width in (90, 120, 200):
        out = render(status_answer(), width=width)
        assert max(len(line) for line in table(out)) <= width - 1
    wide = render(status_answer(), width=400)
    assert "does_not_exist_anywhere_in_this_world_or_the_next'" in wide
    narrow = render(status_answer(), width=40)  # the error keeps a readable minimum
    (long_row,) = [ln for ln in table(narrow) if ln.startswith("a_rather")]
    assert len(long_row.split("  ")[-1]) == 20


def test_colour_only_when_asked_and_the_columns_still_line_up() -> None:
    plain = render(status_answer())
    coloured = render(status_answer(), colour=True, width=None)
    assert "\x1b[32mready" in coloured and "\x1b[31merror" in coloured
    assert "\x1b[33mbackoff" in coloured and "\x1b[33mdegraded" in coloured
    assert "\x1b[2mrecovered; " in coloured  # a past error is dimmed
    assert ANSI.sub("", coloured) == plain


def test_no_locations() -> None:
    out = render({"status": "ok", "pid": 1, "uptime_seconds": 5, "locations": {}})
    assert out.splitlines() == [
        "manager pid 1  ok  up 5s",
        "  ".join(HEADERS[:-1]) + "  LAST ERROR",
    ]


def test_helpers() -> None:
    assert [duration(s) for s in (None, 0, 59.9, 61, 3600, 90000)] == [
        "-",
        "0s",
        "59s",
        "1m01s",
        "1h00m",
        "1d01h",
    ]
    assert [size(n) for n in (None, 0, 5 * 2**20, 3 * 2**30)] == ["-", "0.0M", "5.0M", "3.0G"]
    assert short("a\n\n  last   line  \n", 50) == "last line"
    assert short("x" * 10, 5) == "xxxx…"
    assert short(None, 5) == ""
    failed = [{"at": 1.0, "to": "failed", "reason": "too often"}]
    assert last_error({"state": "failed", "error": None, "transitions": failed}) == "too often"
    assert last_error({"state": "ready", "transitions": failed}).startswith("recovered; ")
    assert last_error({"state": "starting", "transitions": failed}).startswith("earlier; ")
    failed_reload = {"at": 1.0, "error": "RuntimeError: no", "traceback": None}
    ready = {"state": "ready", "reload_error": failed_reload, "transitions": failed}
    assert last_error(ready).startswith("reload failed ")
    assert last_error(ready).endswith(": RuntimeError: no")
    assert last_error({"error": None, "transitions": [{"to": "ready", "reason": "fine"}]}) == ""


# -- a real manager ------------------------------------------------------------------------------

REPO = """
from workspace_manager import job, repository

@job
def j(): ...

@repository
def repo():
    return [j]
"""


def run_in_pty(ws: WorkspaceDir, args: List[str], columns: int, env: Dict[str, str]) -> str:
    """Run `wsm ARGS` with a terminal as its stdout; what it wrote, escapes included."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        wsm_argv(*args), cwd=ws.root, env=env, stdout=slave, stderr=subprocess.PIPE
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        os.close(master)
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.fixture
def running(ws: WorkspaceDir):
    ws.file("alpha/repo.py", REPO)
    ws.file("broken/repo.py", "import does_not_exist_anywhere_in_this_world_or_the_next\n")
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "alpha/repo.py", "location_name": "alpha"}},
                {"python_file": {"relative_path": "broken/repo.py", "location_name": "broken"}},
            ]
        }
    )
    with WsmUp(ws, "-w", str(path), health=False) as up:
        wait_for(
            lambda: (
                (ws.root / ".wsm-run").exists()
                and list((ws.root / ".wsm-run").glob("*/manager.json"))
            ),
            30,
            "the manager record",
        )
        wait_for(lambda: _states(ws) == {"alpha": "ready", "broken": "error"}, 60, "both settled")
        yield ws, path, up


def _states(ws: WorkspaceDir) -> Dict[str, str]:
    with manager_client(ws) as client:
        return {n: loc["state"] for n, loc in client.call("status")["locations"].items()}


def test_status_of_a_real_manager_in_a_pipe_a_terminal_and_json(running) -> None:
    ws, path, up = running
    piped = ws.run("status", "-w", str(path))
    assert piped.returncode == 0, piped.stderr
    assert not ANSI.search(piped.stdout)
    head, *rows = table(piped.stdout)
    assert head.startswith("LOCATION")
    alpha = next(r for r in rows if r.startswith("alpha"))
    broken = next(r for r in rows if r.startswith("broken"))
    pid = str(_pid(ws, "alpha"))
    assert alpha.split()[1:3] == ["ready", pid]
    assert broken.split()[1] == "error" and "No module named" in broken

    env = dict(ws.env, TERM="xterm")
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    tty = run_in_pty(ws, ["status", "-w", str(path)], 90, env)
    assert "\x1b[32mready" in tty and "\x1b[31merror" in tty
    visible = [ANSI.sub("", line) for line in table(tty)]
    assert max(len(line) for line in visible) <= 89
    (broken_row,) = [line for line in visible if line.startswith("broken")]
    assert len(broken_row) == 89 and broken_row.endswith("…")  # the error fills the width
    no_colour = run_in_pty(ws, ["status", "-w", str(path)], 90, dict(env, NO_COLOR="1"))
    assert not ANSI.search(no_colour) and "ready" in no_colour

    as_json = ws.run("status", "-w", str(path), "--json")
    assert as_json.returncode == 0
    answer = json.loads(as_json.stdout)
    with manager_client(ws) as client:
        direct = client.call("status")
    assert set(answer) == set(direct)
    assert set(answer["locations"]["alpha"]) == set(direct["locations"]["alpha"])
    assert answer["locations"]["alpha"]["pid"] == int(pid)
    up.stop(signal.SIGTERM)


def _pid(ws: WorkspaceDir, name: str) -> int:
    with manager_client(ws) as client:
        return client.call("status")["locations"][name]["pid"]

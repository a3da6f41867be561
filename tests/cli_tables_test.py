"""The columns of `wsm run list`, `wsm schedule list`, `wsm sensor list` and the `ticks`
commands line up whatever is in them: long and wide (East Asian) location names, long job
and sensor names, control characters in a skip reason; on a narrow terminal no row wraps."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import unicodedata
from typing import Any, List, Tuple

from e2e import WorkspaceDir, WsmUp, wait_for, wsm_argv

from workspace_manager.cli import table

WIDE = "データ整備チーム_équipe_longue"  # 2 columns a kana/kanji, é as e + combining accent
WIDE = WIDE.replace("é", "e\u0301")

REPO = """
from workspace_manager import (
    DefaultScheduleStatus, DefaultSensorStatus, RunRequest, ScheduleDefinition, SkipReason,
    job, repository, sensor,
)

@job
def a_job_with_a_rather_long_name_for_a_table(context):
    pass

@job
def j(context):
    pass

@sensor(jobs=[a_job_with_a_rather_long_name_for_a_table, j], minimum_interval_seconds=0.5,
        default_status=DefaultSensorStatus.RUNNING)
def launches_twice(context):
    if (context.cursor or "") == "2":
        return SkipReason("done\\x1b[31m red \\x9b tab\\there")
    context.update_cursor(str(int(context.cursor or 0) + 1))
    name = "j" if context.cursor == "1" else "a_job_with_a_rather_long_name_for_a_table"
    return RunRequest(run_key=context.cursor, job_name=name)

@sensor(job=j, minimum_interval_seconds=60)
def s(context):
    return SkipReason("never")

nightly_refresh_of_everything = ScheduleDefinition(
    name="nightly_refresh_of_everything", job=j, cron_schedule="0 3 * * *",
    execution_timezone="Europe/Berlin",
    default_status=DefaultScheduleStatus.RUNNING,
)
short = ScheduleDefinition(job=j, cron_schedule="* * * * *", name="t")

@repository
def repo():
    return [a_job_with_a_rather_long_name_for_a_table, j, launches_twice, s,
            nightly_refresh_of_everything, short]
"""


def columns_of(text: str) -> int:
    """Terminal columns, computed here on its own (UAX #11), not with the code under test."""
    total = 0
    for c in text:
        if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
            continue
        total += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return total


def cells(line: str) -> List[Tuple[int, str]]:
    """(start column, text) of each cell: cells are two or more spaces apart."""
    out = []
    for m in re.finditer(r"\S+(?: \S+)*", line):
        out.append((columns_of(line[: m.start()]), m.group()))
    return out


def assert_aligned(output: str, rows_wanted: int) -> None:
    lines = output.rstrip("\n").splitlines()
    assert len(lines) == rows_wanted + 1, output
    starts = [c for c, _ in cells(lines[0])]
    for line in lines[1:]:
        got = [c for c, _ in cells(line)]
        assert got == starts, f"columns at {got}, header at {starts}:\n{output}"
    assert not any("\x1b" in ln or "\x9b" in ln or "\t" in ln for ln in lines), output


def on_terminal(ws: WorkspaceDir, *args: str, columns: int) -> str:
    """The output of `wsm ARGS` on a pseudo-terminal `columns` wide."""
    master, slave = pty.openpty()
    env = dict(ws.env, COLUMNS=str(columns), NO_COLOR="1")
    proc = subprocess.Popen(
        wsm_argv(*args), cwd=ws.root, env=env, stdout=slave, stderr=subprocess.PIPE
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_lists_and_ticks_line_up_in_a_pipe_and_fit_a_narrow_terminal(ws: WorkspaceDir) -> None:
    ws.file("code/repo.py", REPO)
    entries = [
        {"python_file": {"relative_path": "code/repo.py", "location_name": name}}
        for name in (WIDE, "x")
    ]
    ws.workspace({"load_from": entries})
    with WsmUp(ws) as up:
        up.wait_state(WIDE, "ready")
        up.wait_state("x", "ready")

        def four_runs_done() -> Any:
            runs = json.loads(ws.run("run", "list", "--json").stdout or "[]")
            return len(runs) == 4 and all(r["status"] == "SUCCESS" for r in runs)

        wait_for(four_runs_done, 60, "two runs of each location's sensor")

        def skipped() -> Any:
            ticks = ws.run("sensor", "ticks", "x:launches_twice", "--json")
            return any(t["status"] == "skipped" for t in json.loads(ticks.stdout or "[]"))

        wait_for(skipped, 30, "a skipped tick")
        piped = {
            "runs": ws.run("run", "list"),
            "schedules": ws.run("schedule", "list"),
            "sensors": ws.run("sensor", "list"),
            "ticks": ws.run("sensor", "ticks", "launches_twice", "--limit", "6"),
            "status": ws.run("status"),
        }
        narrow = {
            "runs": on_terminal(ws, "run", "list", columns=80),
            "ticks": on_terminal(ws, "sensor", "ticks", "launches_twice", "-n", "6", columns=60),
            "sensors": on_terminal(ws, "sensor", "list", columns=80),
        }
        up.track()
    for name, done in piped.items():
        assert done.returncode == 0, (name, done.stderr)
    assert_aligned(piped["runs"].stdout, 4)
    assert WIDE in piped["runs"].stdout  # a pipe gets every character
    assert "a_job_with_a_rather_long_name_for_a_table" in piped["runs"].stdout
    assert_aligned(piped["schedules"].stdout, 4)
    assert_aligned(piped["sensors"].stdout, 4)
    assert_aligned(piped["ticks"].stdout, 6)
    assert "\\x1b[31m red \\x9b tab here" in piped["ticks"].stdout
    # `wsm status`: its table is lines 2-4 (the manager's line first, the daemon's last);
    # a ready location has no LAST ERROR cell
    # and PID, RESTARTS, UPTIME, RSS are aligned on the right: compare where cells end
    table_lines = piped["status"].stdout.splitlines()[1:4]
    edges = [[(c, c + columns_of(t)) for c, t in cells(ln)] for ln in table_lines]
    head = edges[0]
    for row in edges[1:]:
        assert [row[i][0] for i in (0, 1, 3)] == [head[i][0] for i in (0, 1, 3)], table_lines
        assert [row[i][1] for i in (2, 4, 5, 6)] == [head[i][1] for i in (2, 4, 5, 6)]
    for name, rows, limit in (("runs", 4, 80), ("ticks", 6, 60), ("sensors", 4, 80)):
        out = narrow[name]
        assert_aligned(out, rows)
        assert max(columns_of(ln) for ln in out.splitlines()) < limit, out
        assert "…" in out


def test_render_measures_wide_combining_and_control_characters() -> None:
    rows = [("数据", "ok"), ("e\u0301e\u0301", "ok"), ("a\x1bb", "ok"), ("plain", "ok")]
    out = table.render(("NAME", "RESULT"), rows).splitlines()
    assert [columns_of(ln.split("ok")[0]) for ln in out[1:]] == [len("a\\x1bb  ")] * 4
    assert out[3] == "a\\x1bb  ok"
    assert table.clip("数据数据", 5) == "数据…"
    narrow = table.render(("A", "B"), [("x" * 30, "y" * 30)], columns=40, shrink=(0,))
    assert max(len(ln) for ln in narrow.splitlines()) == 39

"""What `wsm up`, `wsm logs`, `wsm status`, /status and the state folder show, end to end:
one console line per failure (the traceback kept in the log, /status and `wsm list`),
`wsm logs -F`, one status document for /status and `wsm status --json`, and pruning the
state folders of workspaces that are gone."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from cli_up_test import REPO_B
from e2e import WorkspaceDir, WsmUp

BROKEN = """
import helper_of_the_broken_location  # a module that does not exist
"""

#: Exits while loading the first time only, so it recovers after one backoff.
FLAKY = """
import os, sys
from workspace_manager import job, repository

marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crashed-once")
if not os.path.exists(marker):
    open(marker, "w").close()
    os._exit(7)

@job
def j(): ...

@repository
def r():
    return [j]
"""


def broken_workspace(ws: WorkspaceDir) -> Path:
    ws.file("alpha/repo.py", REPO_B)
    ws.file("broken/repo.py", BROKEN)
    return ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "alpha/repo.py", "location_name": "alpha"}},
                {"python_file": {"relative_path": "broken/repo.py", "location_name": "broken"}},
            ]
        }
    )


def test_a_broken_location_is_one_console_line_and_its_traceback_is_kept(
    ws: WorkspaceDir,
) -> None:
    path = broken_workspace(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        loc = up.wait_state("broken", "error")
        up.wait_state("alpha", "ready")
        time.sleep(0.5)  # any late output would have arrived
        console = [line for line in up.lines if re.match(r"\S+ broken ", line)]
        assert not [line for line in up.lines if "Traceback" in line or 'File "' in line]
        (failure,) = [line for line in console if " error " in line]
        assert "No module named 'helper_of_the_broken_location'" in failure
        assert "wsm logs broken" in failure
        assert len(console) == 2, console  # starting, then the failure
        # the traceback, without wsm's own frames: in /status, `wsm logs` and `wsm list`
        assert "helper_of_the_broken_location" in loc["traceback"]
        assert "workspace_manager" not in loc["traceback"]
        logs = ws.run("logs", "-w", str(path), "broken")
        assert "Traceback" in logs.stdout and "broken/repo.py" in logs.stdout
        assert "workspace_manager/loader" not in logs.stdout
    listed = ws.run("list", "-w", str(path))
    assert listed.returncode == 1 and "Traceback" in listed.stdout


def test_logs_follow_is_capital_f_and_small_f_is_refused_clearly(ws: WorkspaceDir) -> None:
    path = broken_workspace(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_state("alpha", "ready")
        refused = ws.run("logs", "-w", str(path), "alpha", "-f")
        assert refused.returncode == 2
        assert "-F/--follow" in refused.stderr and "--python-file" in refused.stderr
        assert "Traceback" not in refused.stderr
        plain = ws.run("logs", "-w", str(path), "alpha")
        assert plain.returncode == 0 and "ready" in plain.stdout


def test_status_document_is_one_and_complete_from_the_first_ready_moment(
    ws: WorkspaceDir,
) -> None:
    path = broken_workspace(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        first_ready = up.wait_state("alpha", "ready")
        assert isinstance(first_ready["rss_bytes"], int) and first_ready["rss_bytes"] > 0
        up.wait_state("broken", "error")
        http = up.status()
        cli = json.loads(ws.run("status", "-w", str(path), "--json").stdout)
        assert set(http) == set(cli)
        for name in ("alpha", "broken"):
            assert set(http["locations"][name]) == set(cli["locations"][name])
        for doc in (http, cli):
            assert doc["workspace"] == str(path)
            assert doc["target"] == {"workspace": str(path)}
            assert doc["pid"] == up.proc.pid
            assert doc["locations"]["alpha"]["log"].endswith("alpha.log")


def test_status_names_a_python_file_target_plainly(ws: WorkspaceDir) -> None:
    repo = ws.file("single.py", REPO_B)
    with WsmUp(ws, "-f", "single.py") as up:
        up.wait_state("single", "ready")
        doc = up.status()
        assert doc["workspace"] == str(repo)
        assert doc["target"] == {"python_file": str(repo), "attribute": None}
        table = ws.run("status", "-f", "single.py")
        assert f"file {repo}" in table.stdout.splitlines()[0]


def test_a_recovered_location_shows_its_old_error_as_past(ws: WorkspaceDir) -> None:
    ws.file("flaky/repo.py", FLAKY)
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "flaky/repo.py", "location_name": "flaky"}}
            ],
            "supervision": {"backoff_initial_seconds": 0.1},
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        loc = up.wait_state("flaky", "ready")
        assert loc["restarts"] == 1 and loc["error"] is None
        table = ws.run("status", "-w", str(path)).stdout
        (row,) = [line for line in table.splitlines() if line.startswith("flaky")]
        # still told, but as the past, with its time
        assert re.search(r"recovered; \d\d:\d\d:\d\d: exited.* 7", row), row


def _stale(ws: WorkspaceDir, key: str, identity: str, days: float) -> Path:
    folder = ws.root / ".wsm-state" / key
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "x.log").write_text("old\n")
    (folder / "target.json").write_text(json.dumps({"identity": identity}))
    then = time.time() - days * 86400
    for p in (folder / "logs" / "x.log", folder / "logs", folder / "target.json", folder):
        os.utime(p, (then, then))
    return folder


def test_state_folders_of_gone_targets_are_pruned_never_a_running_ones(
    ws: WorkspaceDir,
) -> None:
    path = broken_workspace(ws)
    gone_ws = _stale(ws, "aaaaaaaaaaaa", f"workspace:{ws.root / 'gone' / 'workspace.yaml'}", 30)
    gone_file = _stale(ws, "bbbbbbbbbbbb", f"file:{ws.root / 'gone.py'}#", 30)
    recent = _stale(ws, "cccccccccccc", f"workspace:{ws.root / 'gone2' / 'workspace.yaml'}", 1)
    alive = _stale(ws, "dddddddddddd", f"workspace:{path}", 30)  # the workspace exists
    unknown = ws.root / ".wsm-state" / "eeeeeeeeeeee"
    unknown.mkdir()
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_state("alpha", "ready")
        assert "removed 2 state folders" in up.output()
        assert not gone_ws.exists() and not gone_file.exists()
        assert recent.exists() and alive.exists() and unknown.exists()
        # the running manager's own folder, its workspace deleted and its files aged: kept
        own = [p for p in (ws.root / ".wsm-state").iterdir() if (p / "logs" / "alpha.log").exists()]
        assert len(own) == 1
        moved = path.with_name("moved.yaml")
        path.rename(moved)
        then = time.time() - 30 * 86400
        for root, _dirs, files in os.walk(own[0]):
            for name in [".", *files]:
                os.utime(os.path.join(root, name), (then, then))
        pruned = ws.run("state", "prune", "--older-than", "0")
        assert pruned.returncode == 0, pruned.stderr
        assert own[0].exists() and str(own[0]) not in pruned.stdout
        assert str(recent) in pruned.stdout and not recent.exists()
        moved.rename(path)
    # `wsm list` leaves no state folder behind
    before = set((ws.root / ".wsm-state").iterdir())
    assert ws.run("list", "-w", str(path)).returncode == 1
    assert set((ws.root / ".wsm-state").iterdir()) == before

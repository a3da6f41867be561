"""`wsm reload` end to end (SPEC section 3): locations whose code changed are restarted by a
plain reload, and a successor that fails to load leaves its predecessor serving, is recorded
in /status and `wsm status`, and makes `wsm reload` exit 1 naming it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from cli_up_test import REPO_B, manager_client
from e2e import WorkspaceDir, WsmUp

REPO_TWO_JOBS = """
from workspace_manager import job, repository

@job
def b_job(): ...

@job
def added_job(): ...

@repository
def repo_b():
    return [b_job, added_job]
"""

#: Edits that break a location's code, each a different way of failing to load.
BROKEN_EDITS = {
    "raises": "raise RuntimeError('broken edit of the code')\n",
    "exits": "import os\nos._exit(3)\n",
    "not_a_repository": "x = 1\n",
}


def two_locations(ws: WorkspaceDir) -> Path:
    ws.file("alpha/repo.py", REPO_B)
    ws.file("beta/repo.py", REPO_B)
    return ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "alpha/repo.py", "location_name": "alpha"}},
                {"python_file": {"relative_path": "beta/repo.py", "location_name": "beta"}},
            ]
        }
    )


def edit(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime forward: a coarse file system clock cannot hide it."""
    path.write_text(text)
    later = time.time() + 2
    os.utime(path, (later, later))


def jobs(ws: WorkspaceDir, location: str) -> list:
    with manager_client(ws) as client:
        snap = client.call("snapshot", {"location": location})
    return sorted(j["name"] for repo in snap["repositories"] for j in repo["jobs"])


def test_plain_reload_restarts_a_location_whose_code_changed(ws: WorkspaceDir) -> None:
    path = two_locations(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        first = up.wait_all_settled()["locations"]
        edit(ws.root / "alpha/repo.py", REPO_TWO_JOBS)
        res = ws.run("reload", "-w", str(path))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "restarted  alpha" in res.stdout and "unchanged  beta" in res.stdout
        now = up.wait_all_settled()["locations"]
        assert now["alpha"]["pid"] != first["alpha"]["pid"]
        assert now["beta"]["pid"] == first["beta"]["pid"]  # its code did not change
        assert jobs(ws, "alpha") == ["added_job", "b_job"]
        # nothing changed since: a second reload restarts nothing
        again = ws.run("reload", "-w", str(path))
        assert again.returncode == 0 and "restarted" not in again.stdout, again.stdout
        assert up.location("alpha")["pid"] == now["alpha"]["pid"]


@pytest.mark.parametrize("how", sorted(BROKEN_EDITS))
def test_a_successor_that_fails_to_load_leaves_its_predecessor_serving(
    ws: WorkspaceDir, how: str
) -> None:
    path = two_locations(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        first = up.wait_all_settled()["locations"]
        edit(ws.root / "alpha/repo.py", BROKEN_EDITS[how])
        # named: its successor fails, and the predecessor goes on serving
        res = ws.run("reload", "-w", str(path), "alpha")
        assert res.returncode == 1, res.stdout + res.stderr
        assert "alpha" in res.stderr and "still serving" in res.stderr
        assert "Traceback" not in res.stderr
        loc = up.location("alpha")
        assert loc["state"] == "ready" and loc["pid"] == first["alpha"]["pid"]
        assert loc["reload_error"]["error"] and loc["reload_error"]["at"] > 0
        assert jobs(ws, "alpha") == ["b_job"]  # the old code still answers
        table = ws.run("status", "-w", str(path))
        (row,) = [line for line in table.stdout.splitlines() if line.startswith("alpha")]
        assert "ready" in row and "reload failed" in row
        # its code still differs from what serves: a plain reload tries again, fails again
        plain = ws.run("reload", "-w", str(path))
        assert plain.returncode == 1 and "alpha" in plain.stderr
        assert "unchanged  beta" in plain.stdout
        assert up.location("alpha")["pid"] == first["alpha"]["pid"]
        # fixed: the next plain reload replaces it and clears the failed attempt
        edit(ws.root / "alpha/repo.py", REPO_TWO_JOBS)
        fixed = ws.run("reload", "-w", str(path))
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        loc = up.location("alpha")
        assert loc["state"] == "ready" and loc["pid"] != first["alpha"]["pid"]
        assert loc["reload_error"] is None
        assert up.location("beta")["pid"] == first["beta"]["pid"]


def test_a_failed_successor_is_in_the_location_log(ws: WorkspaceDir) -> None:
    path = two_locations(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_all_settled()
        edit(ws.root / "alpha/repo.py", BROKEN_EDITS["raises"])
        assert ws.run("reload", "-w", str(path)).returncode == 1
        logs = ws.run("logs", "-w", str(path), "alpha")
        assert "broken edit of the code" in logs.stdout and "Traceback" in logs.stdout
        status = json.loads(ws.run("status", "-w", str(path), "--json").stdout)
        assert "Traceback" in status["locations"]["alpha"]["reload_error"]["traceback"]


def test_reload_says_whether_new_and_retried_locations_loaded(ws: WorkspaceDir) -> None:
    path = two_locations(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_all_settled()
        # a new location that does not load: no predecessor, still named, exit 1
        ws.file("gamma/repo.py", BROKEN_EDITS["raises"])
        data = {
            "load_from": [
                {"python_file": {"relative_path": f"{n}/repo.py", "location_name": n}}
                for n in ("alpha", "beta", "gamma")
            ]
        }
        ws.workspace(data)
        res = ws.run("reload", "-w", str(path))
        assert res.returncode == 1, res.stdout + res.stderr
        assert "started    gamma" in res.stdout
        assert "gamma: failed to load: RuntimeError: broken edit" in res.stderr
        assert "still serving" not in res.stderr
        assert up.location("gamma")["state"] == "error"
        # fixed, then reloaded at once (before the code watcher retries it): exit 0
        edit(ws.root / "gamma/repo.py", REPO_B)
        fixed = ws.run("reload", "-w", str(path), "gamma")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert up.location("gamma")["state"] == "ready"


def test_a_config_change_whose_environment_fails_to_build_keeps_the_predecessor(
    ws: WorkspaceDir,
) -> None:
    path = two_locations(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        first = up.wait_all_settled()["locations"]
        data = {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "alpha/repo.py",
                        "location_name": "alpha",
                        "environment": {
                            "requirements": ["no-such-package-wsm-test==1.0"],
                            "pip_args": ["--no-index"],
                        },
                    }
                },
                {"python_file": {"relative_path": "beta/repo.py", "location_name": "beta"}},
            ]
        }
        ws.workspace(data)
        res = ws.run("reload", "-w", str(path), timeout=300)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "alpha" in res.stderr and "no-such-package-wsm-test" in res.stderr
        loc = up.location("alpha")
        assert loc["state"] == "ready" and loc["pid"] == first["alpha"]["pid"]
        assert "no-such-package-wsm-test" in loc["reload_error"]["error"]
        # the config it serves is still the old one: the next reload tries the new one again
        again = ws.run("reload", "-w", str(path), timeout=300)
        assert again.returncode == 1 and "restarted  alpha" in again.stdout

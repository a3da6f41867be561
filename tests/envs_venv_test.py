"""Issue 12 point 5 (SPEC section 6): a location whose `executable_path` is a project's own
`.venv`, made by `uv sync` in the project offline from a wheelhouse made in the test, runs
with that venv's `bin/` first on PATH, in its loader and in the runs it launches
(`wsm job execute`, and a run the manager launches): a console script of a package
installed there is found by `shutil.which`, and a child `python` is the venv's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp, wsm_argv
from wheelhouse import PYTHON, UV, make_wheel, offline_env, pyproject, uv_lock

pytestmark = pytest.mark.skipif(UV is None, reason="uv is a test dependency (.[test])")

# What the location sees, at load (job tags, shown by `wsm list --json`) and in a run (the job
# writes it to the file named in its run config). `python` is resolved the way a shell would.
REPO = """
import json, os, shutil, subprocess, sys
from workspace_manager import job, repository

def seen():
    tool = shutil.which("team-tool")
    child = subprocess.run(
        ["python", "-c", "import sys, teamtool; print(sys.prefix, teamtool.VALUE)"],
        capture_output=True, text=True,
    )
    return {
        "tool": tool or "not found",
        "tool_says": subprocess.run([tool], capture_output=True, text=True).stdout.strip()
        if tool else "",
        "child_python": child.stdout.strip() or child.stderr.strip(),
        "path": os.environ.get("PATH", ""),
        "virtual_env": os.environ.get("VIRTUAL_ENV", "unset"),
        "prefix": sys.prefix,
    }

@job(tags=seen())
def report(context):
    with open(context.run_config["out"], "w") as f:
        json.dump(seen(), f)

@repository
def team():
    return [report]
"""


def make_project_venv(root: Path) -> Path:
    """`team/`: a project depending on `teamtool` (a wheel with a console script), locked and
    synced by uv into its own `.venv`, as a team does on its machine. Returns the project."""
    wheels = root / "wheels"
    tool = make_wheel(wheels, "teamtool", "1.0", scripts={"team-tool": "teamtool:main"})
    project = root / "team"
    pyproject(project, "team", ["teamtool"], {"teamtool": tool})
    cache = root / "uv-cache"
    uv_lock(project, cache)
    assert UV is not None
    done = subprocess.run(
        [UV, "sync", "--frozen", "--python", str(PYTHON)],
        cwd=project,
        env=offline_env(cache),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (project / ".venv" / "pyvenv.cfg").is_file()
    assert (project / ".venv" / "bin" / "team-tool").is_file()
    (project / "repo.py").write_text(REPO)
    return project


def expected(project: Path) -> Dict[str, Any]:
    venv = project / ".venv"
    return {
        "tool": str(venv / "bin" / "team-tool"),
        "tool_says": "teamtool 1.0",
        "child_python": f"{venv} teamtool 1.0",
        "virtual_env": str(venv),
        "prefix": str(venv),
    }


def check(seen: Dict[str, Any], project: Path) -> None:
    path = seen.pop("path").split(os.pathsep)
    assert path[0] == str(project / ".venv" / "bin"), path
    assert str(Path(sys.executable).parent) not in path  # wsm's own venv is not found
    assert seen == expected(project)


def test_a_projects_own_uv_venv_runs_its_location_and_runs(ws: WorkspaceDir) -> None:
    project = make_project_venv(ws.root)
    path = ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "team/repo.py",
                        "location_name": "team",
                        "executable_path": "team/.venv/bin/python",
                    }
                }
            ]
        }
    )
    env = dict(ws.env)
    # as after `source .venv/bin/activate` of wsm's own venv
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)

    # the loader
    listed = subprocess.run(
        wsm_argv("list", "--json", "-w", str(path)),
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    location = json.loads(listed.stdout)["locations"]["team"]
    check(dict(location["repositories"][0]["jobs"][0]["tags"]), project)

    # a run in the foreground
    out = ws.root / "executed.json"
    done = subprocess.run(
        wsm_argv(
            "job", "execute", "-w", str(path), "report", "--config", json.dumps({"out": str(out)})
        ),
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check(json.loads(out.read_text()), project)

    # a run the manager launches
    out = ws.root / "launched.json"
    with WsmUp(ws, "-w", str(path), env=env) as up:
        status = up.wait_all_settled(timeout=60)
        assert status["locations"]["team"]["state"] == "ready", up.output()
        with manager_client(ws) as client:  # the loader the manager started (or forked)
            snap = client.call("snapshot", {"location": "team"})
        check(dict(snap["repositories"][0]["jobs"][0]["tags"]), project)
        launched = subprocess.run(
            wsm_argv(
                "job",
                "launch",
                "-w",
                str(path),
                "report",
                "--wait",
                "--config",
                json.dumps({"out": str(out)}),
            ),
            cwd=ws.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert launched.returncode == 0, launched.stdout + launched.stderr + up.output()
    check(json.loads(out.read_text()), project)

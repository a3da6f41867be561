"""Issue 12 point 5 (SPEC section 6): a location whose `executable_path` is a project's own
`.venv`, made by `uv sync` in the project offline from a wheelhouse made in the test, runs
with that venv's `bin/` first on PATH, in its loader and in the runs it launches
(`wsm job execute`, and a run the manager launches): a console script of a package
installed there is found by `shutil.which`, and a child `python` is the venv's.

A conda environment's interpreter works the same way, with CONDA_PREFIX and CONDA_DEFAULT_ENV
set as `conda activate` sets them: one is made offline by rattler from a local channel
(tests/conda_channel.py says how, and why its `python` is the tests' own CPython)."""

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
from wheelhouse import PYTHON, UV, make_wheel, pyproject, run_uv, uv_lock

from workspace_manager.envs.activation import activation_vars, conda_env_name, environment_root
from workspace_manager.envs.resolve import InterpreterError, check_executable

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
        "conda_prefix": os.environ.get("CONDA_PREFIX", "unset"),
        "conda_default_env": os.environ.get("CONDA_DEFAULT_ENV", "unset"),
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
    run_uv(project, cache, "sync", "--frozen")
    assert (project / ".venv" / "pyvenv.cfg").is_file()
    assert (project / ".venv" / "bin" / "team-tool").is_file()
    (project / "repo.py").write_text(REPO)
    return project


def expected(root: Path, conda_name: str = "") -> Dict[str, Any]:
    """What a process of an environment at ``root`` sees: its console script and python first,
    VIRTUAL_ENV for a virtualenv, CONDA_PREFIX and CONDA_DEFAULT_ENV for a conda prefix."""
    return {
        "tool": str(root / "bin" / "team-tool"),
        "tool_says": "teamtool 1.0",
        "child_python": f"{root} teamtool 1.0",
        "virtual_env": "unset" if conda_name else str(root),
        "conda_prefix": str(root) if conda_name else "unset",
        "conda_default_env": conda_name or "unset",
        "prefix": str(root),
    }


def check(seen: Dict[str, Any], root: Path, conda_name: str = "") -> None:
    path = seen.pop("path").split(os.pathsep)
    assert path[0] == str(root / "bin"), path
    assert path.count(str(root / "bin")) == 1, path
    assert str(Path(sys.executable).parent) not in path  # wsm's own venv is not found
    assert seen == expected(root, conda_name)


def manager_env(ws: WorkspaceDir) -> Dict[str, str]:
    """The manager's environment, as after `source .venv/bin/activate` of wsm's own venv."""
    env = dict(ws.env)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    for name in ("CONDA_PREFIX", "CONDA_DEFAULT_ENV"):
        env.pop(name, None)
    return env


def everything_seen(ws: WorkspaceDir, executable: str) -> Dict[str, Dict[str, Any]]:
    """What location `team` (repo.py in team/, on interpreter ``executable``) sees: in the
    loader of `wsm list`, in `wsm job execute`, in the loader under `wsm up`, and in a run
    that manager launches."""
    path = ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "team/repo.py",
                        "location_name": "team",
                        "executable_path": executable,
                    }
                }
            ]
        }
    )
    env = manager_env(ws)
    seen: Dict[str, Dict[str, Any]] = {}
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
    seen["list"] = dict(location["repositories"][0]["jobs"][0]["tags"])

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
    seen["execute"] = json.loads(out.read_text())

    out = ws.root / "launched.json"
    with WsmUp(ws, "-w", str(path), env=env) as up:
        status = up.wait_all_settled(timeout=60)
        assert status["locations"]["team"]["state"] == "ready", up.output()
        with manager_client(ws) as client:  # the loader the manager started (or forked)
            snap = client.call("snapshot", {"location": "team"})
        seen["up"] = dict(snap["repositories"][0]["jobs"][0]["tags"])
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
    seen["launch"] = json.loads(out.read_text())
    return seen


def test_a_projects_own_uv_venv_runs_its_location_and_runs(ws: WorkspaceDir) -> None:
    project = make_project_venv(ws.root)
    for where, seen in everything_seen(ws, "team/.venv/bin/python").items():
        try:
            check(seen, project / ".venv")
        except AssertionError as exc:
            raise AssertionError(f"in {where}: {exc}") from None


def test_a_conda_environment_runs_its_location_and_runs(ws: WorkspaceDir) -> None:
    """A conda prefix made by rattler (conda-meta/ records, the noarch package's console
    script written by the installer) as `executable_path`: its bin/ first on PATH, and
    CONDA_PREFIX and CONDA_DEFAULT_ENV (its name: it lives in an `envs/` folder) as
    `conda activate` sets them, everywhere a venv's are."""
    pytest.importorskip("rattler")
    from conda_channel import conda_env

    prefix = ws.root / "conda" / "envs" / "teamenv"
    python = conda_env(prefix, ws.root / "conda-work", "teamtool", "team-tool")
    assert (prefix / "conda-meta").is_dir() and not (prefix / "pyvenv.cfg").exists()
    records = sorted(p.name for p in (prefix / "conda-meta").glob("*.json"))
    assert [r.split("-")[0] for r in records] == ["python", "teamtool"], records
    ws.file("team/repo.py", REPO)
    for where, seen in everything_seen(ws, str(python)).items():
        try:
            check(seen, prefix, conda_name="teamenv")
        except AssertionError as exc:
            raise AssertionError(f"in {where}: {exc}") from None


def test_conda_activation_rules(tmp_path: Path) -> None:
    """`conda activate`'s CONDA_DEFAULT_ENV (conda's `_default_env`): a named env's folder
    name, "base" for a root install, else the prefix's path; a venv gets no CONDA_ vars."""
    named = tmp_path / "miniconda" / "envs" / "etl"
    base = tmp_path / "miniconda"
    loose = tmp_path / "project" / ".conda"
    for prefix in (named, base, loose):
        (prefix / "conda-meta").mkdir(parents=True)
        (prefix / "bin").mkdir()
        (prefix / "bin" / "python").touch()
    (base / "condabin").mkdir()
    got = activation_vars(str(named / "bin" / "python"), "/usr/bin")
    assert got == {
        "PATH": f"{named}/bin:/usr/bin",
        "CONDA_PREFIX": str(named),
        "CONDA_DEFAULT_ENV": "etl",
    }
    assert activation_vars(str(base / "bin" / "python"), None)["CONDA_DEFAULT_ENV"] == "base"
    assert conda_env_name(str(loose)) == str(loose)
    # pixi's environments are conda prefixes in the project: .pixi/envs/NAME
    pixi = tmp_path / "project" / ".pixi" / "envs" / "default"
    (pixi / "conda-meta").mkdir(parents=True)
    assert activation_vars(str(pixi / "bin" / "python"), "")["CONDA_DEFAULT_ENV"] == "default"
    assert environment_root(str(loose / "bin" / "python")) == str(loose)


def test_a_venv_whose_interpreter_is_gone_is_named_so(ws: WorkspaceDir) -> None:
    """A project's .venv outlives the interpreter it was made from (`uv python uninstall`,
    `pyenv uninstall`): its bin/python is a dangling link. `wsm validate` says that in one
    line, not "no such file" for a file the user sees in `ls`; so does the location's start."""
    made_from = ws.root / "pythons" / "python3"
    made_from.parent.mkdir()
    made_from.symlink_to(PYTHON)
    venv = ws.root / "team" / ".venv"
    subprocess.run([str(made_from), "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").symlink_to(made_from)
    ws.file("team/repo.py", "")
    path = ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "team/repo.py",
                        "executable_path": "team/.venv/bin/python",
                    }
                }
            ]
        }
    )
    assert ws.run("validate", "-w", str(path)).returncode == 0
    made_from.unlink()  # the interpreter is uninstalled
    done = ws.run("validate", "-w", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"{path}:4:22: executable_path 'team/.venv/bin/python' links to {made_from}, which does "
        "not exist (the interpreter its virtualenv was made from is gone: make the virtualenv "
        "again, e.g. `uv sync` or `python -m venv`)"
    ], done.stderr
    with pytest.raises(InterpreterError, match=r"links to .*, which does not exist \(the"):
        check_executable(venv / "bin" / "python")

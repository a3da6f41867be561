"""The environment a location's process sees (SPEC section 6, issue 8 section 9): its own
environment's bin/ first on PATH (and VIRTUAL_ENV), as in an activated virtualenv, and a
clear hint when a module is missing while the shell had a PYTHONPATH that wsm does not pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

from e2e import WorkspaceDir

from workspace_manager.envs.activation import activation_vars, environment_root

# Reports what the location sees through job tags, which `wsm list --json` shows.
REPORTER = """
import os, shutil, subprocess, sys
from workspace_manager import job, repository

def _run(tool):
    path = shutil.which(tool)
    if path is None:
        return "not found"
    return subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout.strip()

SEEN = {
    "python": shutil.which("python") or "not found",
    "tool": _run("{tool}"),
    "virtual_env": os.environ.get("VIRTUAL_ENV", "unset"),
    "path": os.environ.get("PATH", ""),
    "executable": sys.executable,
}

@job(tags=SEEN)
def report():
    pass

@repository
def seen():
    return [report]
"""

HELLO_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "hellotool"
version = "1.0"

[project.scripts]
hello-tool = "hellotool:main"
"""


def _seen(ws: WorkspaceDir, workspace: Path, env: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
    result = subprocess.run(
        [*_wsm(), "list", "--json", "-w", str(workspace)],
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    return {
        name: loc["repositories"][0]["jobs"][0]["tags"] for name, loc in data["locations"].items()
    }


def _wsm() -> list:
    from e2e import wsm_argv

    return wsm_argv()


def _make_venv(path: Path, tool: str) -> Path:
    """A virtualenv (no pip, fast) with one hand-made command-line tool in its bin/."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    script = path / "bin" / tool
    script.write_text(f"#!/bin/sh\necho {tool} from {path.name}\n")
    script.chmod(0o755)
    return path / "bin" / "python"


def test_built_env_and_venv_executable_get_their_bin_first_on_path(ws: WorkspaceDir) -> None:
    ws.file("hellotool/pyproject.toml", HELLO_PYPROJECT)
    ws.file("hellotool/hellotool/__init__.py", "def main():\n    print('hello from hellotool')\n")
    ws.file("built/repo.py", REPORTER.replace("{tool}", "hello-tool"))
    ws.file("venvexe/repo.py", REPORTER.replace("{tool}", "venv-tool"))
    ws.file("plain/repo.py", REPORTER.replace("{tool}", "wsm"))
    venv_python = _make_venv(ws.root / "uservenv", "venv-tool")
    workspace = ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "built/repo.py",
                        "location_name": "built",
                        "environment": {
                            "requirements": ["../hellotool"],
                            "pip_args": ["--no-index", "--no-build-isolation"],
                        },
                    }
                },
                {
                    "python_file": {
                        "relative_path": "venvexe/repo.py",
                        "location_name": "venvexe",
                        "executable_path": str(venv_python),
                    }
                },
                {"python_file": {"relative_path": "plain/repo.py", "location_name": "plain"}},
            ]
        }
    )
    own_bin = str(Path(sys.executable).parent)
    env = dict(ws.env)
    # as after `source .venv/bin/activate`: wsm's own bin/ (with its python) first on PATH
    env["PATH"] = own_bin + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    seen = _seen(ws, workspace, env)

    built = seen["built"]
    built_bin = str(Path(built["executable"]).parent)
    assert "/envs/" in built_bin
    assert built["python"] == os.path.join(built_bin, "python")
    assert built["tool"] == "hello from hellotool"  # the console script of its package
    assert built["virtual_env"] == str(Path(built_bin).parent)
    assert built["path"].split(os.pathsep)[0] == built_bin
    assert own_bin not in built["path"].split(os.pathsep)  # wsm's own python is not found

    venvexe = seen["venvexe"]
    assert venvexe["python"] == str(venv_python)
    assert venvexe["tool"] == "venv-tool from uservenv"
    assert venvexe["virtual_env"] == str(venv_python.parent.parent)
    assert own_bin not in venvexe["path"].split(os.pathsep)

    # no environment: it runs on wsm's interpreter, so wsm's bin/ is its own
    plain = seen["plain"]
    assert plain["python"] == os.path.join(own_bin, "python")
    assert plain["path"].split(os.pathsep).count(own_bin) == 1
    assert plain["tool"].startswith("wsm")  # its own tools, here wsm itself


def test_activation_vars_rules(tmp_path: Path) -> None:
    venv_python = _make_venv(tmp_path / "v", "t")
    root = str(tmp_path / "v")
    assert environment_root(str(venv_python)) == root
    assert environment_root("/usr/bin/python3") is None
    got = activation_vars(str(venv_python), "/usr/local/bin:/usr/bin")
    assert got == {"VIRTUAL_ENV": root, "PATH": f"{root}/bin:/usr/local/bin:/usr/bin"}
    # already on PATH further back: moved to the front, not doubled
    got = activation_vars(str(venv_python), f"/usr/bin:{root}/bin")
    assert got["PATH"] == f"{root}/bin:/usr/bin"
    # a bare interpreter: PATH kept as is (minus wsm's own venv bin/, if any), no VIRTUAL_ENV
    assert "VIRTUAL_ENV" not in activation_vars("/usr/bin/python3", "/usr/bin")
    assert activation_vars("/usr/bin/python3", None) == {}


def test_missing_module_names_the_dropped_pythonpath(ws: WorkspaceDir) -> None:
    libs = ws.root / "libs"
    ws.file("libs/helperlib.py", "VALUE = 1\n")
    repo = "import helperlib\nfrom workspace_manager import Definitions, job\n\n@job\ndef j():\n    pass\n\ndefs = Definitions(jobs=[j])\n"
    ws.file("a/repo.py", repo)
    ws.file("b/repo.py", repo)
    workspace = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "a/repo.py", "location_name": "a"}},
                {
                    "python_file": {
                        "relative_path": "b/repo.py",
                        "location_name": "b",
                        "env_vars": {"PYTHONPATH": str(libs)},
                    }
                },
            ]
        }
    )
    env = dict(ws.env, PYTHONPATH=f"{libs}{os.pathsep}/nonexistent")
    done = subprocess.run(
        [*_wsm(), "list", "--json", "-w", str(workspace)],
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    locations = json.loads(done.stdout)["locations"]
    assert locations["a"]["error"] == (
        "ModuleNotFoundError: No module named 'helperlib' (wsm does not pass the shell's "
        f"PYTHONPATH={libs}{os.pathsep}/nonexistent to locations; set it in the location's "
        "env_vars)"
    )
    assert locations["b"]["state"] == "ready", locations["b"]  # the fix the hint points to

    # without a PYTHONPATH in the manager's environment, the plain message
    done = subprocess.run(
        [*_wsm(), "list", "--json", "-w", str(workspace)],
        cwd=ws.root,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    plain = json.loads(done.stdout)["locations"]["a"]["error"]
    assert plain == "ModuleNotFoundError: No module named 'helperlib'"

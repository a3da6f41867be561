"""`wsm job execute` imports only what it uses: its start is most of a trivial job's time
(docs/daemon.md, "As built: runs"). No timing here: the bench measures (bench/run_launch_bench.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Tuple

REPO = """
from workspace_manager import job, repository

@job
def trivial(context):
    print("ran")

@repository
def repo():
    return [trivial]
"""

PROBE = textwrap.dedent(
    """
    import json, sys
    from workspace_manager.cli.main import main
    code = main(["job", "execute", "trivial"])
    print("MODULES " + json.dumps([code, sorted(sys.modules)]))
    """
)

#: never needed by `wsm job execute` of a location without an environment, with its
#: workspace file unchanged since it last passed the schema
NOT_IMPORTED = (
    "jsonschema",
    "referencing",
    "packaging",
    "filelock",
    "importlib.resources.readers",
    "workspace_manager.http",
    "workspace_manager.daemon",
    "workspace_manager.envs.service",
    "workspace_manager.envs.build",
    "workspace_manager.supervisor.manager",
)


def execute(folder: Path) -> Tuple[List[str], str]:
    """`wsm job execute trivial` in `folder`: (the modules it imported, its stdout)."""
    env = dict(
        os.environ,
        WSM_RUNTIME_DIR=str(folder / "run"),
        WSM_STATE_DIR=str(folder / "state"),
        WSM_CACHE_DIR=str(folder / "cache"),
    )
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES "))
    code, modules = json.loads(line[len("MODULES ") :])
    assert code == 0, done.stderr
    assert "ran" in done.stdout
    return modules, done.stdout


def test_execute_imports_only_what_it_uses(tmp_path: Path) -> None:
    (tmp_path / "trivial_repo.py").write_text(REPO)
    (tmp_path / "workspace.yaml").write_text("load_from:\n  - python_file: trivial_repo.py\n")
    first, _ = execute(tmp_path)
    assert "jsonschema" in first  # the first time, the file is checked against the schema
    modules, _ = execute(tmp_path)
    unwanted = [m for m in modules if m.split(".")[0] in NOT_IMPORTED or m in NOT_IMPORTED]
    unwanted += [m for m in modules for p in NOT_IMPORTED if m.startswith(p + ".")]
    assert sorted(set(unwanted)) == []


def test_a_location_with_an_environment_still_gets_it(tmp_path: Path) -> None:
    """The environment cache, imported only for such a location, builds and reuses it."""
    (tmp_path / "env_repo.py").write_text(
        REPO.replace('print("ran")', 'import sys; print("ran in", sys.prefix)')
    )
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n"
        "  - python_file:\n"
        "      relative_path: env_repo.py\n"
        "      environment: {requirements: []}\n"
    )
    envs = tmp_path / "cache" / "envs"
    for _ in range(2):  # built, then reused
        modules, out = execute(tmp_path)
        assert "workspace_manager.envs.service" in modules
        assert f"ran in {envs}" in out

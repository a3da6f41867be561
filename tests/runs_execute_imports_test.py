"""`wsm job execute` imports only what it uses: its start is most of a trivial job's time
(docs/daemon.md, "As built: runs"). No timing here: the bench measures (bench/run_launch_bench.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import List, Tuple

from e2e import WorkspaceDir, modules_in, probe_imports

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
    import json, subprocess, sys
    at_spawn = []

    class Popen(subprocess.Popen):
        def __init__(self, args, *rest, **kwargs):
            if not at_spawn and "workspace_manager.runner" in " ".join(map(str, args)):
                at_spawn.append(sorted(sys.modules))  # what the CLI imported before the run
            super().__init__(args, *rest, **kwargs)

    subprocess.Popen = Popen
    from workspace_manager.cli.main import main
    code = main(["job", "execute", "trivial"])
    print("MODULES " + json.dumps([code, sorted(sys.modules), at_spawn]))
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
    "workspace_manager.sdk",  # the package's SDK names load on first use (PEP 562)
    "yaml",  # the validation cache keeps the parsed document of a file that passed
    "uuid",  # a run's id is made from os.urandom (runs/ids.py): uuid imports platform
    "platform",
)

#: not imported before the run's process is spawned (runs/execute_start.py): needed, if at
#: all, only while the process starts on the other core.
NOT_BEFORE_THE_RUN = NOT_IMPORTED + (
    "workspace_manager.protocol.client",
    "difflib",
    "psutil",
    "asyncio",
    "workspace_manager.runs.coordinator",
    "workspace_manager.runs.process",
    "workspace_manager.storage.sqlite",
    "workspace_manager.storage.writer",
    "sqlite3",
)


def execute(folder: Path) -> Tuple[List[str], str]:
    """`wsm job execute trivial` in `folder`: (the modules it imported, its stdout)."""
    modules, _, out = execute_with_spawn(folder)
    return modules, out


def execute_with_spawn(folder: Path) -> Tuple[List[str], List[str], str]:
    """`wsm job execute trivial` in `folder`: (the modules it imported, those it had
    imported when it spawned the run's process, its stdout)."""
    (code, modules, at_spawn), done = probe_imports(folder, PROBE)
    assert code == 0, done.stderr
    assert "ran" in done.stdout
    assert at_spawn, "no run process was spawned through subprocess.Popen"
    return modules, at_spawn[0], done.stdout


def test_execute_imports_only_what_it_uses(tmp_path: Path) -> None:
    (tmp_path / "trivial_repo.py").write_text(REPO)
    (tmp_path / "workspace.yaml").write_text("load_from:\n  - python_file: trivial_repo.py\n")
    first, _ = execute(tmp_path)
    assert "jsonschema" in first  # the first time, the file is checked against the schema
    assert "yaml" in first  # and parsed with PyYAML
    modules, before_the_run, _ = execute_with_spawn(tmp_path)
    assert modules_in(modules, NOT_IMPORTED) == []
    assert modules_in(before_the_run, NOT_BEFORE_THE_RUN) == []


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
    envs = Path(WorkspaceDir(tmp_path).env["WSM_CACHE_DIR"]) / "envs"
    for _ in range(2):  # built, then reused
        modules, out = execute(tmp_path)
        assert "workspace_manager.envs.service" in modules
        assert f"ran in {envs}" in out

"""The commands that only read (`wsm status`, `wsm run list`) import what they use: every
module is paid at each start. No timing here (docs/daemon.md has the measurements)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Tuple

from e2e import WorkspaceDir, modules_in, probe_imports

PROBE = textwrap.dedent(
    """
    import json, sys
    from workspace_manager.cli.main import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    print("MODULES " + json.dumps([code, sorted(sys.modules)]))
    """
)

#: what no command that only reads needs before it knows a manager runs
NEVER = (
    "workspace_manager.sdk",
    "workspace_manager.supervisor.manager",
    "workspace_manager.daemon",
    "workspace_manager.http",
    "yaml",
    "jsonschema",
    "psutil",
)


def wsm(folder: Path, *args: str) -> Tuple[int, List[str]]:
    """`wsm ARGS` in `folder` with private runtime, state and cache dirs: (exit status, the
    modules it imported)."""
    (code, modules), _ = probe_imports(folder, PROBE, *args)
    return code, modules


def test_status_with_no_manager(tmp_path: Path) -> None:
    code, modules = wsm(tmp_path, "status")
    assert code == 3
    assert modules_in(modules, (*NEVER, "workspace_manager.protocol.client", "ssl")) == []


def test_run_list(tmp_path: Path) -> None:
    code, modules = wsm(tmp_path, "run", "list")
    assert code in (0, 1)  # 1: no runs recorded here
    assert modules_in(modules, NEVER) == []


def test_finding_a_running_manager_needs_no_psutil(tmp_path: Path) -> None:
    """Whether the manager a record names still lives is read from /proc."""
    record = Path(WorkspaceDir(tmp_path).env["WSM_RUNTIME_DIR"]) / "0123456789ab" / "manager.json"
    record.parent.mkdir(parents=True, mode=0o700)
    record.write_text(
        json.dumps(
            {
                "pid": os.getpid(),  # alive: this test
                "key": "0123456789ab",
                "identity": "workspace:/nowhere/workspace.yaml",
                "control": f"unix:{tmp_path / 'no-such.sock'}",
                "secret": "x",
                "started_at": 0.0,
                "version": "0",
            }
        )
    )
    code, modules = wsm(tmp_path, "status")
    assert code == 3  # found, but its control socket does not answer
    assert "workspace_manager.protocol.client" in modules  # it was found, and called
    assert modules_in(modules, NEVER) == []


def test_status_table_needs_no_console(tmp_path: Path) -> None:
    """The table's colours come from cli/colours.py; cli/console.py imports the manager."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, workspace_manager.cli.status; print(sorted(sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "'workspace_manager.supervisor.manager'" not in done.stdout
    assert "'workspace_manager.cli.console'" not in done.stdout

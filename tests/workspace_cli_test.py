"""`wsm validate` as a user runs it: a real process, exit status, stdout and stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import workspace_manager.cli

CLI_DIR = Path(workspace_manager.cli.__file__).parent


def validate_argv(args: List[str]) -> List[str]:
    """`wsm validate ARGS` through the real entry point, or the module alone while
    cli/main.py does not exist yet."""
    if (CLI_DIR / "main.py").exists():
        return [sys.executable, "-m", "workspace_manager.cli.main", "validate", *args]
    return [sys.executable, "-m", "workspace_manager.cli.validate", *args]


def run_validate(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(validate_argv(args), cwd=cwd, capture_output=True, text=True, timeout=60)


def write_valid_workspace(folder: Path) -> None:
    (folder / "team_a").mkdir()
    (folder / "team_a" / "repo.py").write_text("")
    (folder / "token.txt").write_text("a-shared-token\n")
    (folder / "workspace.yaml").write_text(
        "load_from:\n"
        "  - python_file: team_a/repo.py\n"
        "  - python_module: team_b.definitions\n"
        "  - grpc_server: {port: 4266, token_file: token.txt}\n"
    )


def test_valid_workspace_default_file(tmp_path: Path) -> None:
    write_valid_workspace(tmp_path)
    result = run_validate([], cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "workspace.yaml: 3 locations OK\n"


def test_valid_workspace_named_with_w(tmp_path: Path) -> None:
    write_valid_workspace(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    result = run_validate(["-w", "../workspace.yaml"], cwd=tmp_path / "elsewhere")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "../workspace.yaml: 3 locations OK\n"


def test_one_location_is_singular(tmp_path: Path) -> None:
    (tmp_path / "repo.py").write_text("")
    (tmp_path / "w.yaml").write_text("load_from:\n  - python_file: repo.py\n")
    result = run_validate(["--workspace", "w.yaml"], cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "w.yaml: 1 location OK\n")


def test_missing_workspace_file(tmp_path: Path) -> None:
    result = run_validate([], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "workspace.yaml: no such file\n"


def test_workspace_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "workspace.yaml").mkdir()
    result = run_validate([], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "workspace.yaml: is a folder, not a file\n"


def test_every_problem_on_its_own_line(tmp_path: Path) -> None:
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n  - python_file: missing.py\n  - python_module: {module_name: a, x: 1}\nfoo: 1\n"
    )
    result = run_validate([], cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        "workspace.yaml:2:18",
        "workspace.yaml:3:37",
        "workspace.yaml:4:1",
    ]
    assert lines[0].endswith(
        f"python_file: no such file 'missing.py' (looked for {tmp_path}/missing.py)"
    )

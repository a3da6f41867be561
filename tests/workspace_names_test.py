"""A location name never becomes a path out of wsm's folders: refused by validation, by
`wsm up` before anything starts, and again where log paths are built."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from e2e import WorkspaceDir, WsmUp

from workspace_manager.supervisor.logs import log_path
from workspace_manager.workspace.errors import WorkspaceError
from workspace_manager.workspace.load import adhoc_workspace, load_workspace
from workspace_manager.workspace.names import UnsafeNameError, name_problem

sys.path.insert(0, str(Path(__file__).parent))

UNSAFE = {
    "": "must not be empty",
    "a/b": "must not contain '/'",
    "../../../../elsewhere/x": "must not contain '/'",
    "..": "must not start with '.'",
    ".": "must not start with '.'",
    ".hidden": "must not start with '.'",
    "a\x00b": "must not contain control characters (NUL, newline, ...)",
    "a\nb": "must not contain control characters (NUL, newline, ...)",
    "\udcff": "must be UTF-8 text",  # an undecodable byte from the environment
    "x" * 201: "must not be longer than 200 bytes",
}


@pytest.mark.parametrize("name", sorted(UNSAFE))
def test_unsafe_names(name: str) -> None:
    assert name_problem(name) == UNSAFE[name]
    with pytest.raises(UnsafeNameError):
        log_path("key", name)


@pytest.mark.parametrize("name", ["team_a", "grpc:localhost:4266", "é-équipe", "a..b", "x" * 200])
def test_safe_names(name: str) -> None:
    assert name_problem(name) is None
    assert log_path("key", name).name == f"{name}.log"


def test_names_from_the_environment_and_derived_from_a_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "repo.py").write_text("")
    (tmp_path / "token").write_text("t\n")
    monkeypatch.setenv("LN", "../x")
    monkeypatch.setenv("HOST", "h/../..")
    path = tmp_path / "workspace.yaml"
    path.write_text(
        "load_from:\n"
        "  - python_file: {relative_path: repo.py, location_name: {env: LN}}\n"
        "  - grpc_server: {host: {env: HOST}, port: 1, token_file: token}\n"
    )
    with pytest.raises(WorkspaceError) as info:
        load_workspace(path)
    assert [str(p).split(": ", 1)[1] for p in info.value.problems] == [
        "location_name: the environment variable LN holds '../x'; a location name must not "
        "contain '/'",
        "location name 'grpc:h/../..:1' (derived from host) must not contain '/'; "
        "set location_name",
    ]


def test_adhoc_file_with_a_dotted_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".repo.py").write_text("")
    with pytest.raises(WorkspaceError) as info:
        adhoc_workspace(python_file=".repo.py")
    assert [str(p) for p in info.value.problems] == [
        ".repo.py: location name '.repo' must not start with '.'"
    ]


REPO = """
from workspace_manager import job, repository

@job
def noop(): ...

@repository
def repo():
    return [noop]
"""


def test_up_refuses_a_name_that_would_write_outside_the_state_folder(ws: WorkspaceDir) -> None:
    """Before: `LN=../../../../elsewhere/x wsm up` wrote its log to <tmp>/elsewhere/x.log."""
    ws.file("repo.py", REPO)
    path = ws.workspace(
        "load_from:\n  - python_file: {relative_path: repo.py, location_name: {env: LN}}\n"
    )
    outside = ws.root.parent / "elsewhere" / "x.log"
    env = dict(ws.env, LN="../../../../elsewhere/x")
    with WsmUp(ws, "-w", str(path), health=False, env=env) as up:
        try:
            code = up.proc.wait(60)
        except Exception:
            code = None
    assert code == 2, up.output()
    assert up.output().splitlines() == [
        f"{path}:2:58: location_name: the environment variable LN holds "
        "'../../../../elsewhere/x'; a location name must not contain '/'"
    ]
    assert not outside.exists()


def test_logs_refuses_a_name_that_is_a_path(ws: WorkspaceDir) -> None:
    result = ws.run("logs", "../../../etc/passwd")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "wsm: no location can be named '../../../etc/passwd': a location name must not contain '/'"
    ]
    assert "Traceback" not in result.stderr

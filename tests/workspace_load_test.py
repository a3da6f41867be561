"""load_workspace / adhoc_workspace on good workspaces, and the checks that need a real
file tree (symlinks made in tmp_path)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import pytest

from workspace_manager.workspace.errors import Problem, WorkspaceError
from workspace_manager.workspace.load import adhoc_workspace, load_workspace
from workspace_manager.workspace.model import (
    CodeTarget,
    EnvironmentSpec,
    RemoteTarget,
    Supervision,
    Workspace,
)

SPEC_EXAMPLE = """\
load_from:
  - python_file:
      relative_path: team_a/repo.py      # relative to the workspace file
      location_name: team_a              # default: derived from file/module name
      attribute: my_repository           # optional
      working_directory: team_a          # optional; default: the file's folder
      executable_path: {python}  # optional: use this interpreter as is
  - python_module:
      module_name: team_b.definitions
      location_name: team_b
      working_directory: team_b
      environment:                       # wsm: build (or reuse) a virtualenv
        python: "3.11"                   # interpreter spec or path; default: wsm's own
        requirements: ["team_b_lib==2.0"]
        requirements_file: team_b/requirements.txt
        pip_args: ["--find-links", "wheels/"]
      env_vars: {{TEAM: b}}                # extra environment variables for the process
      supervision: {{memory_limit_mb: 512}} # overrides the workspace-wide block below, key by key
  - python_package:
      package_name: team_c_pipelines
  - grpc_server:                         # Dagster's remote form; wsm speaks its own
      host: localhost                    #   protocol, so this is a remote `wsm serve`
      port: 4266
      location_name: remote_team
      token_env: REMOTE_TEAM_TOKEN       # wsm: shared token from this variable (or token_file)
      ssl: true                          # TLS; ca_file: PATH to trust a private CA
supervision:                             # workspace-wide defaults, overridable per location
  restart: on-failure                    # always | on-failure | never
  max_restarts: 5                        # within window_seconds, then the location is failed
  window_seconds: 60
  backoff_initial_seconds: 0.5           # doubles each restart, with jitter
  backoff_max_seconds: 30
  startup_timeout_seconds: 60            # load must finish within this
  call_timeout_seconds: 30
  heartbeat_seconds: 2                   # a location missing 3 heartbeats is restarted
  memory_limit_mb: null                  # restart a location whose RSS stays above this
"""


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write(folder: Path, text: str, name: str = "workspace.yaml") -> Path:
    return touch(folder / name, text)


def messages(path: Path) -> List[str]:
    with pytest.raises(WorkspaceError) as info:
        load_workspace(path)
    return [p.message for p in info.value.problems]


def test_spec_example(tmp_path: Path) -> None:
    touch(tmp_path / "team_a" / "repo.py")
    touch(tmp_path / "team_b" / "requirements.txt", "requests\n")
    ws = load_workspace(write(tmp_path, SPEC_EXAMPLE.format(python=sys.executable)))
    root = tmp_path.resolve()
    assert ws.path == root / "workspace.yaml"
    assert ws.root == root
    assert [loc.name for loc in ws.locations] == [
        "team_a",
        "team_b",
        "team_c_pipelines",
        "remote_team",
    ]
    team_a, team_b, team_c, remote = ws.locations

    assert team_a.target == CodeTarget(
        kind="python_file",
        working_directory=root / "team_a",
        python_file=root / "team_a" / "repo.py",
        attribute="my_repository",
    )
    assert team_a.executable_path == Path(sys.executable)
    assert team_a.environment is None
    assert (team_a.line, team_a.column) == (2, 5)

    assert team_b.target == CodeTarget(
        kind="python_module", working_directory=root / "team_b", module_name="team_b.definitions"
    )
    assert team_b.environment == EnvironmentSpec(
        python="3.11",
        requirements=("team_b_lib==2.0",),
        requirements_file=root / "team_b" / "requirements.txt",
        pip_args=("--find-links", "wheels/"),
        installer="pip",
    )
    assert team_b.env_vars == (("TEAM", "b"),)
    # Overridden key by key: the rest comes from the workspace-wide block.
    assert team_b.supervision == Supervision(memory_limit_mb=512.0)
    assert (team_b.line, team_b.column) == (8, 5)

    assert team_c.target == CodeTarget(
        kind="python_package", working_directory=root, module_name="team_c_pipelines"
    )
    assert remote.target == RemoteTarget(
        host="localhost", port=4266, token_env="REMOTE_TEAM_TOKEN", ssl=True
    )
    assert remote.is_remote and not team_a.is_remote
    assert ws.supervision == Supervision()


def test_supervision_merges_key_by_key(tmp_path: Path) -> None:
    touch(tmp_path / "repo.py")
    ws = load_workspace(
        write(
            tmp_path,
            "load_from:\n"
            "  - python_file:\n"
            "      relative_path: repo.py\n"
            "      supervision: {restart: never, heartbeat_seconds: 1}\n"
            "  - python_module: other\n"
            "supervision:\n"
            "  restart: always\n"
            "  max_restarts: 2\n"
            "  memory_limit_mb: 256\n",
        )
    )
    workspace_wide = Supervision(restart="always", max_restarts=2, memory_limit_mb=256.0)
    assert ws.supervision == workspace_wide
    assert ws.location("repo").supervision == Supervision(
        restart="never", max_restarts=2, memory_limit_mb=256.0, heartbeat_seconds=1.0
    )
    assert ws.location("other").supervision == workspace_wide
    assert isinstance(ws.location("repo").supervision.max_restarts, int)


def test_short_forms_and_derived_names(tmp_path: Path) -> None:
    touch(tmp_path / "pipelines" / "team_a.py")
    ws = load_workspace(
        write(
            tmp_path,
            "load_from:\n"
            "  - python_file: pipelines/team_a.py\n"
            "  - python_module: team_b.definitions\n"
            "  - python_package: team_c\n",
        )
    )
    root = tmp_path.resolve()
    assert [loc.name for loc in ws.locations] == ["team_a", "team_b.definitions", "team_c"]
    file_loc, module_loc, package_loc = ws.locations
    assert file_loc.target == CodeTarget(
        kind="python_file",
        working_directory=root / "pipelines",  # the file's folder
        python_file=root / "pipelines" / "team_a.py",
    )
    assert module_loc.target == CodeTarget(
        kind="python_module", working_directory=root, module_name="team_b.definitions"
    )
    assert package_loc.target.kind == "python_package"
    assert package_loc.target.working_directory == root


def test_dagster_docs_workspaces(tmp_path: Path) -> None:
    """Workspaces as Dagster's documentation writes them validate unchanged, except that a
    grpc_server entry names the shared token of the `wsm serve` it reaches."""
    touch(tmp_path / "hello_world_repository.py")
    (tmp_path / "my_working_directory").mkdir()
    touch(tmp_path / "path" / "to" / "team_repos.py")
    venv_bin = tmp_path / "venvs" / "path" / "to" / "ml_tensorflow" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)  # as a virtualenv has it
    ws = load_workspace(
        write(
            tmp_path,
            "load_from:\n"
            "  - python_package: hello_world_package\n"
            "  - python_module: hello_world_module.definitions\n"
            "  - python_file:\n"
            "      relative_path: hello_world_repository.py\n"
            "      working_directory: my_working_directory/\n"
            "  - python_file:\n"
            "      relative_path: path/to/team_repos.py\n"
            "      location_name: ml_team_py_36_virtual_env\n"
            "      executable_path: venvs/path/to/ml_tensorflow/bin/python\n"
            "  - grpc_server:\n"
            "      host: localhost\n"
            "      port: 4266\n"
            '      location_name: "my_grpc_server"\n'
            "      token_env: WSM_TEST_TOKEN\n"
            "  - grpc_server:\n"
            "      socket: /tmp/dagster.sock\n"
            "      location_name: over_a_socket\n"
            "      token_env: WSM_TEST_TOKEN\n",
        )
    )
    assert len(ws.locations) == 6
    hello = ws.location("hello_world_repository")
    assert hello.target.working_directory == tmp_path.resolve() / "my_working_directory"
    # The interpreter's symlink is kept: a virtualenv's bin/python must not be resolved.
    assert ws.location("ml_team_py_36_virtual_env").executable_path == venv_bin / "python"
    assert ws.location("my_grpc_server").target == RemoteTarget(
        host="localhost", port=4266, token_env="WSM_TEST_TOKEN"
    )
    assert ws.location("over_a_socket").target == RemoteTarget(
        host="localhost", socket="/tmp/dagster.sock", token_env="WSM_TEST_TOKEN"
    )


def test_dagster_env_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "repo.py")
    monkeypatch.setenv("WSM_TEST_FILE", "repo.py")
    monkeypatch.setenv("WSM_TEST_HOST", "code-server")
    monkeypatch.setenv("WSM_TEST_PORT", "4000")
    ws = load_workspace(
        write(
            tmp_path,
            "load_from:\n"
            "  - python_file: {relative_path: {env: WSM_TEST_FILE}}\n"
            "  - grpc_server: {host: {env: WSM_TEST_HOST}, port: {env: WSM_TEST_PORT},"
            " token_env: WSM_TEST_HOST}\n",
        )
    )
    assert ws.location("repo").target.python_file == tmp_path.resolve() / "repo.py"
    assert ws.location("grpc:code-server:4000").target == RemoteTarget(
        host="code-server", port=4000, token_env="WSM_TEST_HOST"
    )
    monkeypatch.setenv("WSM_TEST_PORT", "forty")
    assert messages(tmp_path / "workspace.yaml") == [
        "port: the environment variable WSM_TEST_PORT holds 'forty', not a port number (1-65535)"
    ]


def test_relative_paths_are_relative_to_the_workspace_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path / "ws" / "repo.py")
    touch(tmp_path / "repo.py")  # a decoy in the current directory
    monkeypatch.chdir(tmp_path)
    ws = load_workspace(write(tmp_path / "ws", "load_from:\n  - python_file: repo.py\n"))
    assert ws.locations[0].target.python_file == tmp_path.resolve() / "ws" / "repo.py"


def test_absolute_paths_are_taken_as_written(tmp_path: Path) -> None:
    outside = touch(tmp_path / "shared" / "repo.py")
    ws = load_workspace(write(tmp_path / "ws", f"load_from:\n  - python_file: {outside}\n"))
    assert ws.locations[0].target.python_file == outside.resolve()


def test_symlink_inside_the_workspace_is_fine(tmp_path: Path) -> None:
    touch(tmp_path / "real" / "repo.py")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    ws = load_workspace(write(tmp_path, "load_from:\n  - python_file: alias/repo.py\n"))
    assert ws.locations[0].target.python_file == tmp_path.resolve() / "real" / "repo.py"


def test_escape_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    touch(outside / "repo.py")
    touch(outside / "requirements.txt")
    ws_dir = tmp_path / "ws"
    ws_dir.mkdir()
    (ws_dir / "code").symlink_to(outside)
    (ws_dir / "repo.py").symlink_to(outside / "repo.py")
    path = write(
        ws_dir,
        "load_from:\n"
        "  - python_file: code/repo.py\n"
        "  - python_file:\n"
        "      relative_path: repo.py\n"
        "      location_name: second\n"
        "  - python_module:\n"
        "      module_name: team_b\n"
        "      working_directory: code\n"
        "      environment: {requirements_file: code/requirements.txt}\n",
    )
    with pytest.raises(WorkspaceError) as info:
        load_workspace(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:2:18: python_file 'code/repo.py' goes outside the workspace folder "
        f"through the symlink 'code' -> {outside}",
        f"{path}:4:22: relative_path 'repo.py' goes outside the workspace folder "
        f"through the symlink 'repo.py' -> {outside}/repo.py",
        f"{path}:8:26: working_directory 'code' goes outside the workspace folder "
        f"through the symlink 'code' -> {outside}",
        f"{path}:9:40: requirements_file 'code/requirements.txt' goes outside the workspace "
        f"folder through the symlink 'code' -> {outside}",
    ]


def test_escape_through_a_relative_symlink_to_a_missing_place(tmp_path: Path) -> None:
    ws_dir = tmp_path / "ws"
    ws_dir.mkdir()
    (ws_dir / "code").symlink_to("../nowhere")
    path = write(ws_dir, "load_from:\n  - python_file: code/repo.py\n")
    assert messages(path) == [
        "python_file 'code/repo.py' goes outside the workspace folder through the symlink "
        "'code' -> ../nowhere"
    ]


def test_workspace_folder_reached_through_a_symlink(tmp_path: Path) -> None:
    """A workspace opened through a symlinked folder: its own files are still inside."""
    touch(tmp_path / "real" / "repo.py")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    ws = load_workspace(write(tmp_path / "link", "load_from:\n  - python_file: repo.py\n"))
    assert ws.root == tmp_path.resolve() / "real"
    assert ws.path == tmp_path.resolve() / "real" / "workspace.yaml"


def test_executable_path_on_path_and_not_executable(tmp_path: Path) -> None:
    touch(tmp_path / "repo.py")
    script = touch(tmp_path / "bin" / "python")
    path = write(
        tmp_path,
        "load_from:\n"
        "  - python_file: {relative_path: repo.py, executable_path: bin/python}\n"
        "  - python_module: {module_name: m, executable_path: sh}\n",
    )
    assert messages(path) == ["executable_path 'bin/python' is not an executable file"]
    script.chmod(0o755)
    ws = load_workspace(path)
    assert ws.location("repo").executable_path == tmp_path / "bin" / "python"
    sh = ws.location("m").executable_path
    assert sh is not None and sh.is_absolute() and sh.name == "sh"


def test_environment_python_as_a_path(tmp_path: Path) -> None:
    touch(tmp_path / "repo.py")
    ws = load_workspace(
        write(
            tmp_path,
            "load_from:\n"
            f"  - python_file: {{relative_path: repo.py, environment: {{python: {sys.executable}, installer: uv}}}}\n",
        )
    )
    env = ws.locations[0].environment
    assert env == EnvironmentSpec(python=sys.executable, installer="uv")


def test_problems_of_several_kinds_come_together_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "load_from:\n"
        "  - python_file: missing.py\n"  # semantic
        "  - python_module: {module_name: a, bad: 1}\n"  # schema: entry skipped by semantics
        "  - python_module: a\n"  # would clash with entry 2, which is broken: not reported
        "supervision: {restart: maybe}\n"
        "supervision: {}\n",  # YAML duplicate
    )
    with pytest.raises(WorkspaceError) as info:
        load_workspace(path)
    positions = [(p.line, p.column) for p in info.value.problems]
    assert positions == sorted(positions)
    assert [p.message.split(" ")[0] for p in info.value.problems] == [
        "python_file:",
        "unknown",
        "duplicate",
    ]


def test_problem_string_forms() -> None:
    assert str(Problem("w.yaml", 3, 7, "bad")) == "w.yaml:3:7: bad"
    assert str(Problem("w.yaml", None, None, "no such file")) == "w.yaml: no such file"
    error = WorkspaceError([Problem("w.yaml", 9, 1, "b"), Problem("w.yaml", 2, 1, "a")])
    assert str(error) == "w.yaml:2:1: a\nw.yaml:9:1: b"


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        load_workspace(tmp_path / "nope.yaml")
    assert [str(p) for p in info.value.problems] == [f"{tmp_path / 'nope.yaml'}: no such file"]
    path = write(tmp_path, "\n\n")
    assert messages(path) == ["the file is empty; it needs a load_from list of locations"]


# adhoc_workspace: `wsm up -f FILE` / `-m MODULE`.


def test_adhoc_python_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "code" / "my_repo.py")
    monkeypatch.chdir(tmp_path)
    ws = adhoc_workspace(python_file="code/my_repo.py", attribute="defs")
    root = tmp_path.resolve()
    assert ws == Workspace(path=None, root=root, locations=ws.locations)
    (loc,) = ws.locations
    assert loc.name == "my_repo"
    assert loc.target == CodeTarget(
        kind="python_file",
        working_directory=root / "code",
        python_file=root / "code" / "my_repo.py",
        attribute="defs",
    )
    assert loc.supervision == Supervision()


def test_adhoc_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wd").mkdir()
    monkeypatch.chdir(tmp_path)
    (loc,) = adhoc_workspace(module_name="team_b.definitions").locations
    assert loc.name == "team_b.definitions"
    assert loc.target == CodeTarget(
        kind="python_module", working_directory=tmp_path.resolve(), module_name="team_b.definitions"
    )
    (loc,) = adhoc_workspace(module_name="m", working_directory="wd").locations
    assert loc.target.working_directory == tmp_path.resolve() / "wd"


def test_adhoc_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceError) as info:
        adhoc_workspace(python_file="nope.py")
    assert [str(p) for p in info.value.problems] == ["nope.py: no such file"]
    with pytest.raises(WorkspaceError) as info:
        adhoc_workspace(module_name="team-b", working_directory="nowhere")
    assert [str(p) for p in info.value.problems] == [
        "nowhere: no such folder",
        "team-b: not a Python module name (dotted names like team_b.definitions)",
    ]
    with pytest.raises(ValueError):
        adhoc_workspace()
    with pytest.raises(ValueError):
        adhoc_workspace(python_file="a.py", module_name="a")


def test_moving_an_entry_does_not_change_its_location(tmp_path: Path) -> None:
    """reload compares LocationConfigs: a line shift alone is not a change."""
    touch(tmp_path / "repo.py")
    first = load_workspace(write(tmp_path, "load_from:\n  - python_file: repo.py\n"))
    second = load_workspace(
        write(tmp_path, "load_from:\n  - python_module: other\n  - python_file: repo.py\n")
    )
    assert first.location("repo") == second.location("repo")
    assert first.location("repo").line != second.location("repo").line


def test_relative_interpreter_paths_stay_inside_the_workspace(tmp_path: Path) -> None:
    """As relative_path: no `..` out and no symlinked folder out; the interpreter itself may
    be a symlink (a virtualenv's bin/python), and an absolute path is taken as written."""
    outside = tmp_path / "outside" / "venv" / "bin"
    outside.mkdir(parents=True)
    (outside / "python").symlink_to(sys.executable)
    root = tmp_path / "ws"
    touch(root / "repo.py")
    (root / "linked").symlink_to(tmp_path / "outside" / "venv")
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "python").symlink_to(sys.executable)
    path = write(
        root,
        "load_from:\n"
        "  - python_file: {relative_path: repo.py, executable_path: ../outside/venv/bin/python}\n"
        "  - python_file: {relative_path: repo.py, location_name: b,"
        " executable_path: linked/bin/python}\n"
        "  - python_module: {module_name: m, environment: {python: ../outside/venv/bin/python}}\n",
    )
    assert messages(path) == [
        "executable_path '../outside/venv/bin/python' goes outside the workspace folder "
        "(through '..')",
        "executable_path 'linked/bin/python' goes outside the workspace folder through the "
        f"symlink 'linked' -> {tmp_path / 'outside' / 'venv'}",
        "python '../outside/venv/bin/python' goes outside the workspace folder (through '..')",
    ]
    ws = load_workspace(
        write(
            root,
            "load_from:\n"
            "  - python_file: {relative_path: repo.py, executable_path: venv/bin/python}\n"
            f"  - python_file: {{relative_path: repo.py, location_name: b, executable_path: {outside}/python}}\n",
        )
    )
    assert ws.location("repo").executable_path == root.resolve() / "venv" / "bin" / "python"
    assert ws.location("b").executable_path == outside / "python"


def test_grpc_server_token_must_be_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote without a token, or with one that cannot be read, fails at `wsm up`."""
    monkeypatch.delenv("WSM_TEST_NO_TOKEN", raising=False)
    touch(tmp_path / "empty_token")
    path = write(
        tmp_path,
        "load_from:\n"
        "  - grpc_server: {port: 1}\n"
        "  - grpc_server: {port: 2, token_env: WSM_TEST_NO_TOKEN}\n"
        "  - grpc_server: {port: 3, token_file: empty_token}\n",
    )
    # The variable may be unset where the file is validated (CI): it is read at connect time.
    assert messages(path) == [
        "grpc_server needs token_env or token_file: `wsm serve` answers only a client that "
        "has its shared token",
        f"token_file: {tmp_path.resolve() / 'empty_token'} is empty",
    ]
    (tmp_path / "empty_token").write_text("t\n")
    path.write_text(path.read_text().replace("  - grpc_server: {port: 1}\n", ""))
    assert len(load_workspace(path).locations) == 2

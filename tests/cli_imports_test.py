"""Every command imports what it uses, as every module is paid at each start: `wsm --version`
no command's module, the commands that only read (`wsm status`, `wsm run list`, `wsm logs`,
`wsm down`) neither the manager nor OpenSSL, `wsm validate` of a file that passed before no
YAML parser and no jsonschema. No timing here: bench/ has the figures, and README's
"Start-up" how they were taken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Tuple

import pytest
from e2e import WorkspaceDir, WsmUp, modules_in, probe_imports, wait_for

from workspace_manager.cli import terminal
from workspace_manager.supervisor import runtime

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


#: a bare interpreter's own modules: what `imported` leaves out
BARE = 'import sys; print("MODULES [0, [" + ",".join(\'"%s"\' % m for m in sys.modules) + "]]")'

#: what a command looking for a manager never needs: OpenSSL (hashlib, ssl: the manager's key
#: and a Unix socket need neither), the event loop, shutil (bz2, lzma), dataclasses (inspect)
HEAVY = ("ssl", "_ssl", "hashlib", "_hashlib", "asyncio", "shutil", "dataclasses", "inspect")


#: a trivial repository
REPO = """
from workspace_manager import job, repository

@job
def j(): ...

@repository
def r():
    return [j]
"""


def imported(folder: Path, *args: str) -> Tuple[int, List[str]]:
    """`wsm ARGS` as `wsm` would run: (exit status, the modules it imported beyond those of a
    bare interpreter's start-up; with an editable install those include pathlib, so only an
    installed wsm (.ci/run) shows whether a command imports it)."""
    code, modules = wsm(folder, *args)
    (_, bare), _ = probe_imports(folder, BARE)
    return code, sorted(set(modules) - set(bare))


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


def test_version_imports_no_command(tmp_path: Path) -> None:
    """`wsm --version` used to build every command's parser, importing every command's module
    (the workspace loader, asyncio, the manager's console: ~0.2 s)."""
    code, modules = imported(tmp_path, "--version")
    assert code == 0
    ours = [m for m in modules if m.startswith("workspace_manager")]
    assert set(ours) <= {
        "workspace_manager",
        "workspace_manager.cli",
        "workspace_manager.cli.main",
        "workspace_manager.cli.terminal",
        "workspace_manager.version",
    }, ours
    assert modules_in(modules, (*HEAVY, "typing")) == []


@pytest.mark.parametrize(
    "args",
    [("status",), ("status", "--json"), ("down",), ("logs", "a"), ("reload",)],
    ids=" ".join,
)
def test_a_command_finding_no_manager_imports_little(tmp_path: Path, args: Tuple[str]) -> None:
    code, modules = imported(tmp_path, *args)
    assert code in (0, 1, 3)  # `wsm down` with none running: 0; `wsm logs a`: 1
    # `wsm logs` reads the log files through pathlib (cli/logs.py, supervisor/logs.py); an
    # editable install imports pathlib at start-up anyway, so only a wheel shows it
    paths = () if args[0] == "logs" else ("pathlib",)
    # `wsm status` needs no typing either (~5 ms): its modules annotate for type checkers only
    typing = ("typing",) if args[0] == "status" else ()
    forbidden = (*NEVER, *HEAVY, *paths, *typing, "workspace_manager.protocol.client")
    assert modules_in(modules, forbidden) == []


#: what one short call on a Unix socket needs none of: the `socket` module (its enums and
#: selectors; `_socket` serves), threading (`_thread` locks), and C msgpack with datetime
#: (purepack serves payloads this small: protocol/codec.py LAZY_BYTES)
ONE_CALL = ("socket", "selectors", "threading", "msgpack", "datetime")


def test_status_of_a_running_manager_imports_no_ssl(ws: WorkspaceDir) -> None:
    """The control socket is a Unix socket: the protocol client imports ssl for TLS only,
    traceback (linecache, tokenize) only to send an error, and none of ONE_CALL."""
    ws.file("repo.py", REPO)
    ws.workspace({"load_from": [{"python_file": {"relative_path": "repo.py"}}]})
    with WsmUp(ws, health=False):
        wait_for(lambda: wsm(ws.root, "status")[0] == 0, 60, "wsm status to find the manager")
        code, modules = imported(ws.root, "status")
        assert code == 0
        assert "workspace_manager.protocol.client" in modules  # it did talk to the manager
        assert modules_in(modules, (*NEVER, *HEAVY, "pathlib", "traceback", "typing")) == []
        assert modules_in(modules, ONE_CALL) == []


def test_validate_of_an_unchanged_file_parses_no_yaml(ws: WorkspaceDir) -> None:
    """The first `wsm validate` keeps the verdict and the parsed document
    (workspace/validation_cache.py); the next reads them back: no PyYAML, no jsonschema."""
    ws.file("repo.py", "")
    ws.workspace({"load_from": [{"python_file": {"relative_path": "repo.py"}}]})
    code, cold = imported(ws.root, "validate")
    assert code == 0
    assert {"yaml", "jsonschema"} <= set(cold)  # the test's own cache folder: a miss
    code, warm = imported(ws.root, "validate")
    assert code == 0
    assert modules_in(warm, ("yaml", "jsonschema", "asyncio", "ssl", "hashlib", "psutil")) == []


@pytest.mark.parametrize("columns", [None, "0", "-3", "x", "57"])
def test_the_terminal_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str) -> None:
    """cli/terminal.py gives what shutil.get_terminal_size() would (its rules, not its
    import)."""
    import shutil

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal.columns() == shutil.get_terminal_size().columns


def test_the_manager_key_is_sha256() -> None:
    """digest.py's SHA-256 is hashlib's: a key made by an older wsm still names the same
    runtime and state folders."""
    import hashlib

    for identity in ("workspace:/w/workspace.yaml", "file:/r/é.py#repo", ""):
        expected = hashlib.sha256(identity.encode()).hexdigest()[:12]
        assert runtime.manager_key(identity) == expected


def test_a_warm_up_imports_neither_yaml_nor_jsonschema(ws: WorkspaceDir) -> None:
    """`wsm up` of a workspace file that passed `wsm validate` reads the kept document: its
    memory map has neither PyYAML's C parser nor rpds (jsonschema's), which their imports
    load."""
    import importlib.util

    libraries = []
    for name in ("yaml._yaml", "rpds.rpds"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".so"):
            pytest.skip(f"{name} is not a shared object here")
        libraries.append(os.path.realpath(spec.origin))
    ws.file("repo.py", REPO)
    ws.workspace({"load_from": [{"python_file": {"relative_path": "repo.py"}}]})
    assert ws.run("validate").returncode == 0
    with WsmUp(ws, health=False) as up:
        wait_for(lambda: wsm(ws.root, "status")[0] == 0, 60, "wsm status to find the manager")
        maps = Path(f"/proc/{up.proc.pid}/maps").read_text()
    assert [lib for lib in libraries if lib in maps] == []

"""What a run, schedule or sensor command works on, with the real `wsm`: the same
-w FILE | -f PY [-a ATTR] | -m MOD as the rest of the CLI, shown in every --help; -F is
--follow wherever there is a follow, and there -f is refused (never two meanings); a
workspace file that does not exist is said so, in one line."""

from __future__ import annotations

import json
import re
from typing import Any, List

import pytest
from e2e import WorkspaceDir, WsmUp, wait_for

REPO = """
from workspace_manager import DefaultSensorStatus, RunRequest, job, repository, sensor

@job
def hello(context):
    print("hello from the run", flush=True)
    context.log.info("logged by the run")

@sensor(job=hello, minimum_interval_seconds=0.5, default_status=DefaultSensorStatus.RUNNING)
def once(context):
    return RunRequest(run_key="only")

@repository
def repo():
    return [hello, once]
"""

#: Every command that names a manager or its records by -w/-f/-m, and whether it follows.
MANAGER_COMMANDS = [
    (["status"], False),
    (["down"], False),
    (["reload"], False),
    (["logs"], True),
    (["run", "list"], False),
    (["run", "show"], False),
    (["run", "logs"], True),
    (["run", "cancel"], False),
    *[
        ([kind, verb], False)
        for kind in ("schedule", "sensor")
        for verb in ("list", "start", "stop", "ticks")
    ],
]


@pytest.mark.parametrize(
    "command,follows", MANAGER_COMMANDS, ids=[" ".join(c) for c, _ in MANAGER_COMMANDS]
)
def test_every_command_documents_its_target_options(
    ws: WorkspaceDir, command: List[str], follows: bool
) -> None:
    shown = ws.run(*command, "--help")
    assert shown.returncode == 0, shown.stderr
    usage = " ".join(shown.stdout.split())
    assert "[-w FILE]" in usage and "[-a ATTR]" in usage and "[-m MOD]" in usage, usage
    if follows:
        assert "[--python-file PY]" in usage and "[-f PY]" not in usage
        assert re.search(r"-F, --follow", shown.stdout)
    else:
        assert "[-f PY]" in usage and "--follow" not in usage


REFUSED = [
    ["run", "logs", "abcd", "-f"],
    ["run", "logs", "-f", "repo.py", "abcd"],
    ["logs", "team", "-f"],
    ["logs", "-f", "repo.py", "team"],
]


@pytest.mark.parametrize("argv", REFUSED, ids=" ".join)
def test_small_f_where_big_f_follows_is_refused_in_one_clear_line(
    ws: WorkspaceDir, argv: List[str]
) -> None:
    refused = ws.run(*argv)
    assert refused.returncode == 2, refused
    errors = [ln for ln in refused.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "-F/--follow" in errors[0] and "--python-file" in errors[0]
    assert "Traceback" not in refused.stderr


def test_the_runs_of_a_manager_started_with_f_are_read_with_f(ws: WorkspaceDir) -> None:
    ws.file("repo.py", REPO)
    with WsmUp(ws, "-f", "repo.py") as up:
        up.wait_state("repo", "ready")

        def done() -> Any:
            listed = ws.run("run", "list", "-f", "repo.py", "--json")
            assert listed.returncode == 0, listed.stderr
            runs = json.loads(listed.stdout)
            return runs if runs and runs[0]["status"] == "SUCCESS" else None

        run_id = wait_for(done, 60, "the sensor's run to succeed")[0]["run_id"]
        table = ws.run("run", "list", "-f", "repo.py")
        shown = ws.run("run", "show", "-f", "repo.py", run_id[:8])
        logs = ws.run("run", "logs", "--python-file", "repo.py", run_id[:8], "-F")
        ticks = ws.run("sensor", "ticks", "-f", "repo.py", "once")
        listed = ws.run("sensor", "list", "-f", "repo.py")
        up.track()
    assert table.returncode == 0 and run_id[:12] in table.stdout, table.stderr
    assert shown.returncode == 0 and "sensor once" in shown.stdout, shown.stderr
    assert logs.returncode == 0, logs.stderr
    assert "hello from the run" in logs.stdout and "logged by the run" in logs.stdout
    assert ticks.returncode == 0 and run_id[:12] in ticks.stdout, ticks.stderr
    assert listed.returncode == 0 and "once" in listed.stdout, listed.stderr


RECORD_COMMANDS = [
    ["run", "list"],
    ["run", "show", "abcd"],
    ["run", "logs", "abcd"],
    ["run", "logs", "abcd", "-F"],
    ["run", "cancel", "abcd"],
    ["schedule", "ticks", "nightly"],
    ["sensor", "ticks", "watch"],
]


@pytest.mark.parametrize("command", RECORD_COMMANDS, ids=" ".join)
def test_a_missing_workspace_file_is_said_so(ws: WorkspaceDir, command: List[str]) -> None:
    for target, name in [([], "workspace.yaml"), (["-w", "nope.yaml"], "nope.yaml")]:
        done = ws.run(*command, *target)
        assert done.returncode == 1, done
        assert done.stderr == f"wsm: {name}: no such file\n"
    py_flag = "--python-file" if command[:2] == ["run", "logs"] else "-f"
    done = ws.run(*command, py_flag, "gone.py")
    assert done.returncode == 1 and done.stderr == "wsm: gone.py: no such file\n", done


def test_the_records_of_a_removed_workspace_file_are_still_read(ws: WorkspaceDir) -> None:
    ws.file("code/repo.py", REPO)
    path = ws.workspace({"load_from": [{"python_file": {"relative_path": "code/repo.py"}}]})
    executed = ws.run("job", "execute", "hello")
    assert executed.returncode == 0, executed.stderr
    path.unlink()
    listed = ws.run("run", "list")
    assert listed.returncode == 0, listed.stderr
    assert "hello" in listed.stdout and "SUCCESS" in listed.stdout


@pytest.mark.parametrize(
    "command,code",
    [(["status"], 3), (["down"], 0), (["reload"], 3), (["sensor", "list"], 3)],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_no_manager_for_a_missing_file_says_the_file_is_missing(
    ws: WorkspaceDir, command: List[str], code: int
) -> None:
    """The commands that need a running manager keep their exit status (3; `down` 0) and
    say why none runs when the file they name is not there."""
    for target, name in [([], "workspace.yaml"), (["-f", "gone.py"], "gone.py")]:
        done = ws.run(*command, *target)
        said = (done.stdout + done.stderr).strip()
        assert done.returncode == code, done
        assert said == f"wsm: no manager is running for {name} ({name}: no such file)", said

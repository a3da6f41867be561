"""Which manager a command means when no -w/-f/-m is given (cli/targets.find_running):
the one for ./workspace.yaml; only where there is no ./workspace.yaml, the only manager
running. `wsm down` typed in another workspace's folder must never stop this one."""

from __future__ import annotations

import subprocess

from e2e import WorkspaceDir, WsmUp, wsm_argv

REPO = """
from workspace_manager import job, repository

@job
def hello():
    return 1

@repository
def repo():
    return [hello]
"""


def _run(ws: WorkspaceDir, cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        wsm_argv(*args), cwd=cwd, env=ws.env, capture_output=True, text=True, timeout=60
    )


def test_no_w_means_this_folders_workspace_not_another_running_manager(ws: WorkspaceDir) -> None:
    ws.file("a/repo.py", REPO)
    ws.workspace({"load_from": [{"python_file": "repo.py"}]}, name="a/workspace.yaml")
    other = ws.root / "b"
    other.mkdir()
    (other / "repo.py").write_text(REPO)
    (other / "workspace.yaml").write_text("load_from:\n  - python_file: repo.py\n")
    elsewhere = ws.root / "c"  # no workspace.yaml here
    elsewhere.mkdir()
    with WsmUp(ws, "-w", str(ws.root / "a" / "workspace.yaml")) as up:
        up.wait_all_settled()
        # `wsm down` with no manager is done already (exit 0); the others exit 3
        for args, code in (
            (("status",), 3),
            (("down",), 0),
            (("reload",), 3),
            (("job", "launch", "hello"), 3),
        ):
            done = _run(ws, other, *args)
            said = done.stdout + done.stderr
            assert done.returncode == code, (args, said)
            assert "no manager is running for workspace.yaml" in said, (args, said)
            assert "Traceback" not in said
        assert up.proc.poll() is None  # still running: b's `wsm down` did not stop it
        # where no workspace.yaml is, the only manager running is meant
        assert _run(ws, elsewhere, "status").returncode == 0
        assert up.stop() == 0

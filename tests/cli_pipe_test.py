"""Command-line edges a user hits: a reader that stops early (`wsm list | head`), a busy port."""

from __future__ import annotations

import signal
import subprocess

from e2e import WorkspaceDir, wsm_argv

MANY_JOBS = """
from workspace_manager import job, repository

def _make(i):
    @job(name=f"job_{i:04d}", description="a job with a description long enough " * 3)
    def j(): ...
    return j

@repository
def many():
    return [_make(i) for i in range(1500)]
"""


def test_list_into_a_reader_that_stops_early_exits_quietly(ws: WorkspaceDir) -> None:
    ws.file("many.py", MANY_JOBS)
    path = ws.workspace({"load_from": [{"python_file": {"relative_path": "many.py"}}]})
    for fmt in ([], ["--json"]):
        proc = subprocess.Popen(
            wsm_argv("list", "-w", str(path), *fmt),
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(100)  # what `head -c 100` takes, then it goes away
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        rc = proc.wait(120)
        assert "Traceback" not in stderr, stderr
        assert rc == 128 + signal.SIGPIPE, (rc, stderr)


def test_a_health_port_in_use_is_one_line_naming_it(ws: WorkspaceDir) -> None:
    import socket

    ws.file(
        "one.py",
        "from workspace_manager import job, repository\n@job\ndef j(): ...\n"
        "@repository\ndef r():\n    return [j]\n",
    )
    path = ws.workspace({"load_from": [{"python_file": {"relative_path": "one.py"}}]})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = ws.run("up", "-w", str(path), "--health", f"127.0.0.1:{port}", timeout=60)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert f"--health 127.0.0.1:{port}: Address already in use" in res.stderr, res.stderr

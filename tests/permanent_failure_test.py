"""A failure that will not go away by itself is `error` at once, not a restart loop (issue 8,
section 4): a snapshot or an answer larger than the frame limit, an interpreter that is not a
Python or is too old, a load that exits 0 without loading, and code edited while `failed`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp, wait_for
from remote_test import TOKEN, free_port, manager_env, remote_entry

from workspace_manager.protocol.errors import MessageTooLarge

#: 2,000 jobs with 1 KiB descriptions: a snapshot of about 2.2 MiB.
BIG_REPO = """
from workspace_manager import RunRequest, job, repository, sensor

def make(i):
    def body(): ...
    body.__name__ = f"job_{i}"
    return job(name=f"job_{i}", description="d" * 1024)(body)

JOBS = [make(i) for i in range(2000)]

@repository
def big_repo():
    return JOBS
"""

#: A sensor whose answer (2 MiB of run config) is larger than the limit; the rest is small.
CHATTY_REPO = """
from workspace_manager import RunRequest, job, repository, sensor

@job
def chatty_job(): ...

@sensor(job=chatty_job)
def huge_sensor():
    yield RunRequest(run_key="big", run_config={"blob": "x" * (2 * 1024 * 1024)})

@sensor(job=chatty_job)
def small_sensor():
    yield RunRequest(run_key="small", run_config={})

@repository
def chatty():
    return [chatty_job, huge_sensor, small_sensor]
"""


def _quick(**extra: object) -> dict:
    sup = {
        "backoff_initial_seconds": 0.1,
        "backoff_max_seconds": 0.2,
        "heartbeat_seconds": 0.5,
        "max_restarts": 2,
    }
    sup.update(extra)
    return sup


def test_a_snapshot_larger_than_the_frame_limit_is_an_error_naming_the_limit(
    ws: WorkspaceDir,
) -> None:
    ws.file("big/repo.py", BIG_REPO)
    path = ws.workspace(
        {
            "load_from": [{"python_file": {"relative_path": "big/repo.py", "location_name": "big"}}],
            "supervision": _quick(max_message_mb=1),
        }
    )
    assert ws.run("validate", "-w", str(path)).returncode == 0
    with WsmUp(ws, "-w", str(path)) as up:
        loc = up.wait_state("big", "error", "failed", timeout=90)
        assert loc["state"] == "error", loc
        assert loc["restarts"] == 0
        assert "exceeds the frame limit of 1048576 bytes (1 MiB)" in loc["error"]
        assert "max_message_mb" in loc["error"]
        time.sleep(1.0)  # not retried behind our back
        assert up.location("big")["restarts"] == 0


def test_the_frame_limit_is_settable_per_location(ws: WorkspaceDir) -> None:
    ws.file("big/repo.py", BIG_REPO)
    path = ws.workspace(
        {
            "load_from": [
                {
                    "python_file": {
                        "relative_path": "big/repo.py",
                        "location_name": "big",
                        "supervision": {"max_message_mb": 8},
                    }
                }
            ],
            "supervision": _quick(max_message_mb=1),
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        assert up.wait_state("big", "ready", "error", "failed", timeout=90)["state"] == "ready"


def test_an_answer_larger_than_the_limit_fails_that_call_only(ws: WorkspaceDir) -> None:
    ws.file("chatty/repo.py", CHATTY_REPO)
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "chatty/repo.py", "location_name": "chatty"}}
            ],
            "supervision": _quick(max_message_mb=1),
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_state("chatty", "ready")
        pid = up.location("chatty")["pid"]
        with manager_client(ws) as client:

            def sensor(name: str) -> object:
                params = {"sensor": name}
                return client.call(
                    "call", {"location": "chatty", "method": "evaluate_sensor", "params": params}
                )

            with pytest.raises(MessageTooLarge, match="exceeds the frame limit"):
                sensor("huge_sensor")
            assert sensor("small_sensor")  # the same connection still answers
        loc = up.location("chatty")
        assert (loc["state"], loc["pid"], loc["restarts"]) == ("ready", pid, 0)


def test_a_remote_answer_larger_than_the_managers_limit_fails_that_call_only(
    ws: WorkspaceDir,
) -> None:
    """The server's limit is larger than the manager's: the manager's hello tells the server
    what it accepts, so the server refuses the answer instead of the manager dropping the
    connection on an oversized frame and reconnecting."""
    ws.file("chatty.py", CHATTY_REPO)
    port = free_port()
    path = ws.workspace(
        {
            "load_from": [remote_entry("chatty", port)],
            "supervision": _quick(max_message_mb=1, max_restarts=50),
        }
    )
    env = dict(ws.env, WSM_TOKEN=TOKEN, WSM_RUNTIME_DIR=str(ws.root / ".run-serve"))
    serve_args = ("-f", "chatty.py", "--listen", f"tcp://127.0.0.1:{port}")
    with WsmUp(
        ws, *serve_args, "--token-env", "WSM_TOKEN", "--max-message-mb", "16",
        command="serve", env=env,
    ) as server:
        server.wait_state("chatty", "ready")
        with WsmUp(ws, "-w", str(path), env=manager_env(ws)) as up:
            up.wait_state("chatty", "ready")
            with manager_client(ws) as client:
                with pytest.raises(MessageTooLarge, match="1048576 bytes"):
                    client.call(
                        "call",
                        {
                            "location": "chatty",
                            "method": "evaluate_sensor",
                            "params": {"sensor": "huge_sensor"},
                        },
                    )
            time.sleep(0.5)
            loc = up.location("chatty")
            assert (loc["state"], loc["restarts"]) == ("ready", 0), loc


@pytest.mark.slow
def test_a_snapshot_over_the_default_64_mib_is_an_error_at_once(ws: WorkspaceDir) -> None:
    """The example of the issue: 80,000 jobs with long descriptions, default limit."""
    ws.file("big/repo.py", BIG_REPO.replace("range(2000)", "range(80000)"))
    path = ws.workspace(
        {
            "load_from": [{"python_file": {"relative_path": "big/repo.py", "location_name": "big"}}],
            "supervision": _quick(startup_timeout_seconds=120),
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        loc = up.wait_state("big", "error", "failed", timeout=240)
        assert (loc["state"], loc["restarts"]) == ("error", 0), loc
        assert "(64 MiB)" in loc["error"] and "max_message_mb" in loc["error"]

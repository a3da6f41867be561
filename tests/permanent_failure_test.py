"""A failure that will not go away by itself is `error` at once, not a restart loop (issue 8,
section 4): a snapshot or an answer larger than the frame limit, an interpreter that is not a
Python or is too old, a load that exits 0 without loading, and code edited while `failed`.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp, wait_for
from remote_test import TOKEN, free_port, manager_env, remote_entry, serve

from workspace_manager.protocol.client import Client
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
            "load_from": [
                {"python_file": {"relative_path": "big/repo.py", "location_name": "big"}}
            ],
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
            # a request over the location's limit is refused before it is sent
            big_config = {"blob": "y" * (2 * 1024 * 1024)}
            with pytest.raises(MessageTooLarge, match="the execute_job request of"):
                client.call(
                    "call",
                    {
                        "location": "chatty",
                        "method": "execute_job",
                        "params": {"job": "chatty_job", "run_config": big_config},
                    },
                )
            assert sensor("small_sensor")
        loc = up.location("chatty")
        assert (loc["state"], loc["pid"], loc["restarts"]) == ("ready", pid, 0)


def test_the_control_socket_refuses_an_answer_its_client_cannot_read(ws: WorkspaceDir) -> None:
    """The location's limit (4 MiB) lets a 2 MiB answer through to the manager; a CLI client
    that reads at most 1 MiB gets MessageTooLarge on that call, and its connection lives."""
    ws.file("chatty/repo.py", CHATTY_REPO)
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "chatty/repo.py", "location_name": "chatty"}}
            ],
            "supervision": _quick(max_message_mb=4),
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_state("chatty", "ready")
        with manager_client(ws) as big, _control_client(ws, max_frame=1 << 20) as small:
            params = {"sensor": "huge_sensor"}
            request = {"location": "chatty", "method": "evaluate_sensor", "params": params}
            assert big.call("call", request)  # 2 MiB: within the default 64 MiB
            with pytest.raises(MessageTooLarge, match="1048576 bytes"):
                small.call("call", request)
            assert small.call("status", {})["locations"]["chatty"]["state"] == "ready"


def _control_client(ws: WorkspaceDir, max_frame: int) -> Client:
    records = list((ws.root / ".wsm-run").glob("*/manager.json"))
    record = json.loads(records[0].read_text())
    return Client(record["control"], record["secret"], timeout=30, max_frame=max_frame)


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
        ws,
        *serve_args,
        "--token-env",
        "WSM_TOKEN",
        "--max-message-mb",
        "16",
        command="serve",
        env=env,
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


def test_a_remote_snapshot_over_the_managers_limit_is_an_error_naming_both_limits(
    ws: WorkspaceDir,
) -> None:
    ws.file("big.py", BIG_REPO)
    port = free_port()
    path = ws.workspace(
        {
            "load_from": [remote_entry("big", port)],
            "supervision": _quick(max_message_mb=1, max_restarts=50),
        }
    )
    env = dict(ws.env, WSM_TOKEN=TOKEN, WSM_RUNTIME_DIR=str(ws.root / ".run-serve"))
    serve_args = ("-f", "big.py", "--listen", f"tcp://127.0.0.1:{port}", "--token-env")
    with WsmUp(ws, *serve_args, "WSM_TOKEN", command="serve", env=env) as server:
        server.wait_state("big", "ready", timeout=90)
        with WsmUp(ws, "-w", str(path), env=manager_env(ws)) as up:
            loc = up.wait_state("big", "error", "failed", timeout=60)
            assert (loc["state"], loc["restarts"]) == ("error", 0), loc
            assert "1048576 bytes (1 MiB)" in loc["error"]
            assert "max_message_mb" in loc["error"] and "--max-message-mb" in loc["error"]
        assert server.location("big")["state"] == "ready"  # the server was never at fault


@pytest.mark.slow
def test_a_snapshot_over_the_default_64_mib_is_an_error_at_once(ws: WorkspaceDir) -> None:
    """The example of the issue: 80,000 jobs with long descriptions, default limit."""
    ws.file("big/repo.py", BIG_REPO.replace("range(2000)", "range(80000)"))
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "big/repo.py", "location_name": "big"}}
            ],
            "supervision": _quick(startup_timeout_seconds=120),
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        loc = up.wait_state("big", "error", "failed", timeout=240)
        assert (loc["state"], loc["restarts"]) == ("error", 0), loc
        assert "(64 MiB)" in loc["error"] and "max_message_mb" in loc["error"]


# -- the interpreter ------------------------------------------------------------------------

SMALL_REPO = """
from workspace_manager import job, repository

@job
def small_job(): ...

@repository
def small():
    return [small_job]
"""

#: Answers the version question the way `pythonX.Y` would; anything else (the loader) fails
#: as Python 3.6 does on the SDK, so a location started without the check crash-loops.
FAKE_PYTHON = """#!/bin/sh
for arg in "$@"; do
  case "$arg" in
    *platform.python_version*)
      echo '{{"version": "{version}", "implementation": "CPython", "sys_version": "{version}"}}'
      exit 0;;
  esac
done
echo '  File "<sdk>/workspace_manager/__init__.py", line 3' >&2
echo 'SyntaxError: future feature annotations is not defined' >&2
exit 1
"""


def _fake_python(ws: WorkspaceDir, version: str) -> Path:
    path = ws.file(f"fake/python{version}", FAKE_PYTHON.format(version=version))
    path.chmod(0o755)
    return path


def _interpreter_workspace(ws: WorkspaceDir, cases: dict) -> Path:
    ws.file("small/repo.py", SMALL_REPO)
    entries = []
    for name, extra in cases.items():
        entry = {"relative_path": "small/repo.py", "location_name": name}
        entry.update(extra)
        entries.append({"python_file": entry})
    return ws.workspace({"load_from": entries, "supervision": _quick()})


def test_an_interpreter_that_is_not_a_python_or_too_old_is_an_error_that_says_so(
    ws: WorkspaceDir,
) -> None:
    """(A missing or non-executable `executable_path` is found by `wsm validate`.)"""
    script = ws.file("fake/script", "echo hello\n")  # executable, no #! line: ENOEXEC
    script.chmod(0o755)
    cases = {
        "py36": {"executable_path": str(_fake_python(ws, "3.6.15"))},
        "py27": {"executable_path": str(_fake_python(ws, "2.7.18"))},
        "py36_env": {"environment": {"python": str(_fake_python(ws, "3.6.8"))}},
        "true": {"executable_path": "/bin/true"},
        "script": {"executable_path": str(script)},
    }
    path = _interpreter_workspace(ws, cases)
    with WsmUp(ws, "-w", str(path)) as up:
        status = up.wait_all_settled()
        locs = status["locations"]
        assert {n: (loc["state"], loc["restarts"]) for n, loc in locs.items()} == {
            n: ("error", 0) for n in cases
        }, locs
        errors = {n: loc["error"] for n, loc in locs.items()}
        assert "Python 3.6.15 is too old: wsm needs 3.9 or newer" in errors["py36"]
        assert "Python 2.7.18 is too old: wsm needs 3.9 or newer" in errors["py27"]
        assert "Python 3.6.8 is too old: wsm needs 3.9 or newer" in errors["py36_env"]
        assert "/bin/true is not a Python interpreter" in errors["true"]
        assert f"{script} is not a Python interpreter" in errors["script"]


def test_a_crash_while_loading_names_its_cause_in_the_error(ws: WorkspaceDir) -> None:
    """An interpreter that passes the check but dies loading the SDK (a broken install): the
    crash is retried, and its last stderr line is in the error, not only in the log."""
    broken = _fake_python(ws, "3.11.4")
    path = _interpreter_workspace(ws, {"broken": {"executable_path": str(broken)}})
    with WsmUp(ws, "-w", str(path)) as up:
        loc = up.wait_state("broken", "failed", timeout=60)
        assert loc["error"].startswith(
            "exited with status 1 while loading: "
            "SyntaxError: future feature annotations is not defined; restarted 2 times"
        ), loc["error"]


PROBE_COUNTING_PYTHON = """#!/bin/sh
case "$*" in *platform.python_version*) echo probe >> {log};; esac
exec {python} "$@"
"""


def test_the_interpreter_check_is_cached_by_the_executables_identity(ws: WorkspaceDir) -> None:
    import sys

    log = ws.root / "probes.log"
    python = ws.file(
        "fake/python3",
        PROBE_COUNTING_PYTHON.format(log=log, python=os.path.realpath(sys.executable)),
    )
    python.chmod(0o755)
    path = _interpreter_workspace(ws, {"counted": {"executable_path": str(python)}})
    for _ in range(2):
        with WsmUp(ws, "-w", str(path)) as up:
            assert up.wait_all_settled()["locations"]["counted"]["state"] == "ready"
    assert log.read_text().count("probe") == 1  # the second start asked no process
    python.write_text(python.read_text() + "\n")  # a new interpreter at the same path
    with WsmUp(ws, "-w", str(path)) as up:
        assert up.wait_all_settled()["locations"]["counted"]["state"] == "ready"
    assert log.read_text().count("probe") == 2


@pytest.mark.parametrize("how", ["os._exit(0)", "sys.exit(0)", "threading_exit"])
def test_a_load_that_exits_0_without_loading_is_an_error(ws: WorkspaceDir, how: str) -> None:
    code = {
        "os._exit(0)": "import os\nos._exit(0)\n",
        "sys.exit(0)": "import sys\nsys.exit(0)\n",
        # the main thread is still importing when another thread ends the process cleanly
        "threading_exit": "import os, threading, time\n"
        "threading.Thread(target=lambda: os._exit(0)).start()\ntime.sleep(30)\n",
    }[how]
    ws.file("quitter/repo.py", code + SMALL_REPO)
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "quitter/repo.py", "location_name": "quitter"}}
            ],
            "supervision": _quick(),
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        loc = up.wait_state("quitter", "error", "stopped", "failed")
        assert (loc["state"], loc["restarts"]) == ("error", 0), loc
        time.sleep(0.5)
        assert up.location("quitter")["state"] == "error"


# -- failed, then fixed ---------------------------------------------------------------------

CRASHING = """
import os, threading, time
threading.Thread(target=lambda: (time.sleep(0.3), os._exit(1)), daemon=True).start()
"""


def test_a_failed_location_is_tried_again_when_its_code_changes(ws: WorkspaceDir) -> None:
    repo = ws.file("crashy/repo.py", CRASHING + SMALL_REPO)
    path = ws.workspace(
        {
            "load_from": [
                {"python_file": {"relative_path": "crashy/repo.py", "location_name": "crashy"}}
            ],
            "supervision": _quick(max_restarts=1),
        }
    )
    with WsmUp(ws, "-w", str(path)) as up:
        assert up.wait_state("crashy", "failed")["restarts"] == 1
        repo.write_text(SMALL_REPO)  # fixed
        assert up.wait_state("crashy", "ready", timeout=30)["state"] == "ready"


# -- a remote server that comes back --------------------------------------------------------


def test_an_unreachable_remote_is_retried_until_it_comes_back(ws: WorkspaceDir) -> None:
    """Past the point where a local location would be `failed`, a grpc_server location
    keeps retrying at the longest backoff, says how long it has been down, and is ready
    as soon as its server (a restarted pod) listens again."""
    port = free_port()
    path = ws.workspace(
        {
            "load_from": [remote_entry("far", port)],
            "supervision": _quick(max_restarts=1, backoff_max_seconds=0.3),
        }
    )
    with WsmUp(ws, "-w", str(path), env=manager_env(ws)) as up:
        loc = wait_for(
            lambda: (lambda loc: loc if loc["restarts"] >= 4 else None)(up.location("far")),
            60,
            "several reconnects",
        )
        assert loc["state"] in ("backoff", "starting"), loc
        assert loc["down_seconds"] > 0.5
        if loc["state"] == "backoff":
            assert "connection refused; down since 20" in loc["error"]
        code, body = up.get("/readyz?verbose")
        assert code == 503
        assert re.search(r"\[-\]far (backoff|starting): (.* \()?down for \d+s", body), body
        status = ws.run("status", "-w", str(path))
        assert "down " in status.stdout, status.stdout
        time.sleep(1.0)
        assert up.location("far")["state"] != "failed"

        with serve(ws, "far", port) as server:  # the pod is back
            server.wait_state("far", "ready")
            back = up.wait_state("far", "ready", timeout=30)
            assert back["down_seconds"] is None and back["error"] is None
            assert up.get("/readyz")[0] == 200


@pytest.mark.parametrize("value, message", [(0, "0.0625 or more"), (5000, "4095 or less")])
def test_max_message_mb_out_of_range_is_found_by_validate(
    ws: WorkspaceDir, value: int, message: str
) -> None:
    ws.file("small/repo.py", SMALL_REPO)
    path = ws.workspace(
        {
            "load_from": [{"python_file": "small/repo.py"}],
            "supervision": {"max_message_mb": value},
        }
    )
    done = ws.run("validate", "-w", str(path))
    assert done.returncode == 2 and f"max_message_mb must be {message}" in done.stderr

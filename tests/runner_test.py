"""The run process (workspace_manager/runner/) on its own: exit statuses, events on the
status socket, SIGTERM as RunInterrupted in the job, and the lifeline (EOF on the status
socket kills the run's whole tree)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import psutil
from e2e import wait_for

from workspace_manager.loader.launch import make_sdk_dir
from workspace_manager.protocol.framing import FrameDecoder

REPO = """
import os, subprocess, sys, time
from workspace_manager import job, repository

@job
def polite(context):
    try:
        with open(context.run_config["pidfile"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    finally:
        with open(context.run_config["pidfile"] + ".cleaned", "w") as f:
            f.write("yes")

@job
def family(context):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(context.run_config["pidfile"], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(600)

@job
def marker(context):
    with open(context.run_config["path"], "w") as f:
        f.write("ran")

@job
def modules(context):
    # what the run process imported before its job ran (and read no `context.log`)
    import json, sys
    with open(context.run_config["path"], "w") as f:
        json.dump(sorted(sys.modules), f)

@job
def logs(context):
    context.log.info("one")
    context.log.warning("two")

@repository
def repo():
    return [polite, family, marker, modules, logs]
"""


def start(
    tmp: Path, boot: Dict[str, Any], *, keep_stdin: bool = False, ahead: float = 0.0
) -> Tuple[subprocess.Popen, socket.socket]:
    """The runner with `boot` on its stdin: written `ahead` seconds after its start (a
    process started before its run), stdin left open with `keep_stdin`."""
    (tmp / "runner_repo.py").write_text(textwrap.dedent(REPO))
    sdk = make_sdk_dir(str(tmp / "rt"))
    ours, theirs = socket.socketpair()
    code = f"import sys; sys.path.insert(0, {sdk!r}); from workspace_manager.runner.main import main; main()"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(theirs.fileno(),),
        start_new_session=True,
        cwd=tmp,
        env=env,
    )
    full = {
        "run_id": "r" * 32,
        "location": "loc",
        "target": {"kind": "python_file", "python_file": str(tmp / "runner_repo.py")},
        "status_fd": theirs.fileno(),
        "protocol": 1,
        **boot,
    }
    assert proc.stdin is not None
    time.sleep(ahead)
    proc.stdin.write(json.dumps(full).encode() + b"\n")
    proc.stdin.flush()
    if not keep_stdin:
        proc.stdin.close()
    theirs.close()
    return proc, ours


def read_until(sock: socket.socket, decoder: FrameDecoder, event: str) -> List[Dict[str, Any]]:
    """Events up to and with the first `event` (more may follow in the same read)."""
    out: List[Dict[str, Any]] = []
    sock.settimeout(30)
    while not any(e["event"] == event for e in out):
        data = sock.recv(65536)
        assert data, f"EOF before {event!r}: {out}"
        out.extend(decoder.feed(data))
    return out


def events(sock: socket.socket) -> List[Dict[str, Any]]:
    decoder = FrameDecoder()
    out: List[Dict[str, Any]] = []
    sock.settimeout(30)
    while True:
        data = sock.recv(65536)
        if not data:
            return out
        out.extend(decoder.feed(data))


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_bad_bootstrap_exits_3() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from workspace_manager.runner.main import main; main()"],
        input=b'{"run_id": 5}\n',
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert b"bad bootstrap" in done.stderr


def start_held(tmp: Path) -> Tuple[subprocess.Popen, socket.socket, FrameDecoder, List[Any]]:
    """The `marker` job (it writes tmp/ran) held: (process, status socket, its decoder, the
    events up to `loaded`)."""
    proc, sock = start(
        tmp,
        {"job": "marker", "run_config": {"path": str(tmp / "ran")}, "hold": True},
        keep_stdin=True,
    )
    decoder = FrameDecoder()
    return proc, sock, decoder, read_until(sock, decoder, "loaded")


def test_a_held_run_starts_its_job_only_on_go(tmp_path: Path) -> None:
    path = tmp_path / "ran"
    proc, sock, decoder, got = start_held(tmp_path)
    time.sleep(0.5)  # held: the job does not start without `go`
    assert not path.exists() and proc.poll() is None
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    got += events_after(sock, decoder)
    assert proc.wait(60) == 0
    assert [e["event"] for e in got] == ["loaded", "started", "success"]
    assert path.read_text() == "ran"


def test_a_held_run_whose_go_never_comes_exits_0_with_nothing_run(tmp_path: Path) -> None:
    path = tmp_path / "ran"
    proc, sock, decoder, got = start_held(tmp_path)
    assert proc.stdin is not None
    proc.stdin.close()  # what the manager does with a run it does not record
    got += events_after(sock, decoder)
    assert proc.wait(60) == 0
    assert [e["event"] for e in got] == ["loaded"]
    assert not path.exists()
    assert proc.stderr is not None and proc.stderr.read() == b""


def test_a_runner_started_ahead_runs_the_bootstrap_it_gets_later(tmp_path: Path) -> None:
    path = tmp_path / "ran"
    proc, sock = start(tmp_path, {"job": "marker", "run_config": {"path": str(path)}}, ahead=1.0)
    got = events(sock)
    assert proc.wait(60) == 0
    assert [e["event"] for e in got] == ["loaded", "started", "success"]
    assert path.read_text() == "ran"


def test_a_runner_started_ahead_and_never_used_exits_0_quietly(tmp_path: Path) -> None:
    sdk = make_sdk_dir(str(tmp_path / "rt"))
    code = f"import sys; sys.path.insert(0, {sdk!r}); from workspace_manager.runner.main import main; main()"
    done = subprocess.run([sys.executable, "-c", code], input=b"", capture_output=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, b"")


def events_after(sock: socket.socket, decoder: FrameDecoder) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return out
        out.extend(decoder.feed(data))


def test_an_unknown_job_exits_4_with_a_load_failure(tmp_path: Path) -> None:
    proc, sock = start(tmp_path, {"job": "nope"})
    got = events(sock)
    assert proc.wait(60) == 4
    assert [e["event"] for e in got] == ["failure"]
    assert got[0]["stage"] == "load"
    assert "no job named 'nope'" in got[0]["error"]["message"]
    assert got[0]["error"]["traceback"] is None


def test_sigterm_raises_run_interrupted_in_the_job(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    proc, sock = start(tmp_path, {"job": "polite", "run_config": {"pidfile": str(pidfile)}})
    wait_for(pidfile.exists, 30, "the job to start")
    proc.send_signal(signal.SIGTERM)
    got = events(sock)
    assert proc.wait(30) == 128 + signal.SIGTERM
    assert [e["event"] for e in got] == ["loaded", "started", "failure"]
    assert got[-1]["error"]["message"].startswith("RunInterrupted: the run was asked to stop")
    assert (tmp_path / "pid.cleaned").read_text() == "yes"  # its finally ran


def test_eof_on_the_status_socket_kills_the_whole_tree(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    proc, sock = start(tmp_path, {"job": "family", "run_config": {"pidfile": str(pidfile)}})
    wait_for(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, 30, "pids")
    runner, child = (int(p) for p in pidfile.read_text().split())
    sock.close()  # what a manager's SIGKILL does to its end
    started = time.monotonic()
    proc.wait(30)
    wait_for(lambda: not alive(child), 10, "the job's child to die with the run")
    assert not alive(runner)
    assert time.monotonic() - started < 10


def test_a_job_that_never_logs_gets_a_run_process_that_imports_no_logging(tmp_path: Path) -> None:
    # logging brings traceback, re, string, weakref...: ~10 ms of every run's start, paid
    # before the job's first line even when the job never reads `context.log`
    path = tmp_path / "modules.json"
    proc, sock = start(tmp_path, {"job": "modules", "run_config": {"path": str(path)}})
    got = events(sock)
    assert proc.wait(60) == 0, [e["event"] for e in got]
    imported = set(json.loads(path.read_text()))
    assert "workspace_manager.runner.main" in imported
    assert not imported & {"logging", "traceback", "workspace_manager.runner.runlog"}


def test_context_log_made_on_first_use_sends_each_record_once(tmp_path: Path) -> None:
    proc, sock = start(tmp_path, {"job": "logs"})
    got = events(sock)
    assert proc.wait(60) == 0
    logged = [(e["level"], e["message"]) for e in got if e["event"] == "log"]
    assert logged == [("INFO", "one"), ("WARNING", "two")]
    assert [e["event"] for e in got if e["event"] != "log"] == ["loaded", "started", "success"]

"""The fork server on its own (loader/forkserver.py): its requests and answers, a forked
loader that serves and dies with its lifeline, a bad request refused without harm, EOF as
the end. Real processes; the test process is no subreaper, so the forked loader is reparented
past it: it is tracked by pid and start time, and killed if it outlives the test."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import interpreters
import psutil
import pytest
from e2e import wait_for

from workspace_manager.loader import forkserver
from workspace_manager.loader.harness import file_target, start_fork_server
from workspace_manager.loader.launch import make_sdk_dir
from workspace_manager.protocol.client import Client
from workspace_manager.protocol.framing import FrameDecoder

REPO = """
from workspace_manager import job, repository
@job
def noop(): ...
@repository
def forked_repo():
    return [noop]
"""


#: The interpreters the loader supports, where this machine has them (3.9: the oldest).
PYTHONS = interpreters.available("wsm-python", "python3.9", "python3.13")


@pytest.fixture(params=PYTHONS)
def server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Tuple[subprocess.Popen, socket.socket, str]]:
    rundir = tmp_path / "run"
    rundir.mkdir(mode=0o700)
    proc, ours = start_fork_server(request.param, make_sdk_dir(str(rundir)))
    try:
        yield proc, ours, str(rundir)
    finally:
        ours.close()
        try:
            proc.wait(10)
        finally:
            proc.kill()
            proc.wait()


def _kill(pids: List[psutil.Process]) -> None:
    for p in pids:
        try:
            p.kill()
        except psutil.Error:
            pass


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def test_a_forked_loader_serves_and_dies_with_its_lifeline(server, tmp_path: Path) -> None:
    proc, sock, rundir = server
    repo = tmp_path / "code" / "forked_repo.py"
    repo.parent.mkdir()
    repo.write_text(REPO)
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    status, child_status = socket.socketpair()
    env = {"WSM_LOCATION": "forked", "PYTHONUNBUFFERED": "1", "MARK": "m1"}
    request = {"id": 7, "cwd": str(repo.parent), "env": env}
    socket.send_fds(
        sock, [json.dumps(request).encode()], [stdin_r, out_w, err_w, child_status.fileno()]
    )
    for fd in (stdin_r, out_w, err_w):
        os.close(fd)
    child_status.close()
    answer = json.loads(sock.recv(65536))
    assert answer["id"] == 7 and isinstance(answer["pid"], int), answer
    loader = psutil.Process(answer["pid"])
    try:
        assert loader.ppid() != proc.pid  # double-forked: not the server's child
        assert os.getsid(loader.pid) == loader.pid
        secret = secrets.token_hex(8)
        address = f"unix:{rundir}/forked.sock"
        boot = {
            "location": "forked",
            "listen": address,
            "secret": secret,
            "status_fd": forkserver.STATUS_FD,
            "target": file_target(str(repo)),
            "max_frame_bytes": 1 << 20,
            "tls": None,
            "protocol": 1,
        }
        os.write(stdin_w, json.dumps(boot).encode() + b"\n")
        os.close(stdin_w)
        status.settimeout(60)
        decoder = FrameDecoder()
        events: list = []
        while not events:
            data = status.recv(65536)
            assert data, "the status socket closed before loaded"
            events = decoder.feed(data)
        assert events[0][1] == "loaded", events
        with Client(address, secret, timeout=10) as client:
            assert client.call("ping", {})["pid"] == loader.pid
        assert loader.environ().get("MARK") is None  # /proc environ: the server's block
        assert loader.cwd() == str(repo.parent)
        status.close()  # the manager is gone
        wait_for(lambda: _gone(loader), 10, "the forked loader to exit")
        # the server is untouched and serves on
        socket.send_fds(sock, [b'{"id": 8, "cwd": "/", "env": {}}'], [])
        assert json.loads(sock.recv(65536)) == {
            "id": 8,
            "error": "expected 4 descriptors, got 0",
        }
        assert proc.poll() is None
    finally:
        _kill([loader])
        for fd in (out_r, err_r):
            os.close(fd)


def test_bad_requests_are_refused_and_eof_ends_the_server(server) -> None:
    proc, sock, _ = server
    sock.send(b"not json")
    assert json.loads(sock.recv(65536))["error"].startswith("bad request")
    sock.send(b'{"id": 1, "cwd": 3, "env": {}}')
    assert json.loads(sock.recv(65536))["error"].startswith("bad request")
    assert len(os.listdir(f"/proc/{proc.pid}/task")) == 1  # never a thread
    sock.shutdown(socket.SHUT_RDWR)
    assert proc.wait(10) == 0


def test_a_server_whose_manager_left_before_it_was_ready_ends_quietly(tmp_path: Path) -> None:
    """A manager that stops while its server still imports (a full runtime folder ends
    `wsm up` at once) closes its end: the server's "ready" finds nobody, and it exits 0 with
    nothing on stderr (a traceback there reached the manager's console in CI)."""
    rundir = tmp_path / "run"
    rundir.mkdir(mode=0o700)
    sdk = make_sdk_dir(str(rundir))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        forkserver.argv(sys.executable, sdk, theirs.fileno()),
        pass_fds=(theirs.fileno(),),
        env=forkserver.start_vars(dict(os.environ)),
        cwd="/",
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    theirs.close()
    ours.close()  # before the server can have imported the loader
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err.decode()) == (0, "")


def _server_children(pid: int) -> List[int]:
    found: List[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found


def test_a_burst_of_requests_is_answered_by_the_locations_and_every_middle_is_reaped(
    server,
) -> None:
    """The server waits for neither its middle processes nor the locations: each location
    tells its own pid once it leads its session and is no child of the middle process, in
    whatever order they get there; the server reaps every middle process."""
    proc, sock, _ = server
    count = 12
    keep: List[int] = []  # our ends: stdin writers (the loaders wait on them), readers
    for request_id in range(1, count + 1):
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status, child_status = socket.socketpair()
        request = {"id": request_id, "cwd": "/", "env": {"WSM_LOCATION": f"b{request_id}"}}
        socket.send_fds(
            sock, [json.dumps(request).encode()], [stdin_r, out_w, err_w, child_status.fileno()]
        )
        for fd in (stdin_r, out_w, err_w):
            os.close(fd)
        child_status.close()
        keep += [stdin_w, out_r, err_r, status.detach()]
    answers = [json.loads(sock.recv(65536)) for _ in range(count)]
    pids = {a["id"]: a["pid"] for a in answers}
    loaders = [psutil.Process(pid) for pid in pids.values()]
    try:
        assert sorted(pids) == list(range(1, count + 1)), answers
        assert len(set(pids.values())) == count
        for pid in pids.values():
            assert os.getsid(pid) == pid  # its own session before its pid was told
            assert psutil.Process(pid).ppid() != proc.pid
        wait_for(lambda: _server_children(proc.pid) == [], 10, "every middle to be reaped")
        assert proc.poll() is None
    finally:
        for fd in keep:
            os.close(fd)  # stdin EOF: each loader gives up
        for p in loaders:
            try:
                p.wait(10)
            except psutil.Error:
                pass
        _kill(loaders)

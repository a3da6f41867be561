"""Nothing a peer sends stalls the manager's event loop, and a stall of the manager's own
is never blamed on a location: real `wsm up`, real control socket, real hostile remote."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import struct
import threading
import time
from typing import Callable, Iterator, List, Optional, Tuple

import msgpack
import pytest
from e2e import WorkspaceDir, WsmUp, wait_for
from remote_test import manager_env, remote_entry

REPO = """
from workspace_manager import job, repository
@job
def j(): ...
@repository
def r():
    return [j]
"""


class LivezProbe:
    """/livez polled from a thread all along; every answer (or failure) is kept."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.port = port
        self.timeout = timeout
        self.answers: List[object] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                conn.request("GET", "/livez")
                self.answers.append(conn.getresponse().status)
            except OSError as exc:
                self.answers.append(repr(exc))
            finally:
                conn.close()

    def stop(self, at_least: int = 5) -> List[object]:
        wait_for(lambda: len(self.answers) >= at_least, 60, f"{at_least} /livez answers")
        self._stop.set()
        self._thread.join(30)
        return self.answers


def control_path(ws: WorkspaceDir) -> Tuple[str, str]:
    record = json.loads(next((ws.root / ".wsm-run").glob("*/manager.json")).read_text())
    return record["control"][len("unix:") :], record["secret"]


def send_pre_hello_frame(path: str, size: int) -> Tuple[int, bytes]:
    """Send a frame of `size` bytes before any hello; (bytes the manager took, what it said)."""
    sent = 0
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(path)
        chunk = b"\x90" * 65536
        try:
            sock.sendall(struct.pack(">I", size))
            while sent < size:
                sent += sock.send(chunk[: size - sent])
        except OSError:
            pass  # refused: the manager closed the connection
        try:
            answer = sock.recv(65536)
        except OSError:
            answer = b""
    return sent, answer


@pytest.fixture
def one_location(ws: WorkspaceDir) -> Iterator[WsmUp]:
    ws.file("repo.py", REPO)
    path = ws.workspace(
        {"load_from": [{"python_file": "repo.py"}], "supervision": {"heartbeat_seconds": 1}}
    )
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_state("repo", "ready")
        yield up
        up.stop()
        up.assert_no_leftovers()


def test_a_16_mib_pre_hello_frame_on_the_control_socket_is_refused_at_64_kib(
    ws: WorkspaceDir, one_location: WsmUp
) -> None:
    up = one_location
    before = up.location("repo")
    path, _ = control_path(ws)
    assert one_location.port is not None
    probe = LivezProbe(one_location.port)
    try:
        for _ in range(4):  # four in a row once got a healthy location restarted
            sent, answer = send_pre_hello_frame(path, 16 * 1024 * 1024)
            assert sent < 16 * 1024 * 1024  # closed long before the body was taken
            assert answer == b""
    finally:
        answers = probe.stop()
    assert answers and set(answers) == {200}, answers
    after = up.location("repo")
    assert (after["state"], after["pid"]) == ("ready", before["pid"])
    assert "exceeds the limit of 65536" in up.output()


@pytest.mark.slow
def test_a_control_connection_must_finish_its_hello_within_the_deadline_however_it_dribbles(
    ws: WorkspaceDir, one_location: WsmUp
) -> None:
    path, secret = control_path(ws)
    body = msgpack.packb([0, 0, "hello", {"protocol": 1, "secret": secret}])
    frame = struct.pack(">I", len(body)) + body
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        started = time.monotonic()
        closed = False
        for i in range(len(frame) - 1):  # never the last byte: the hello stays incomplete
            try:
                sock.sendall(frame[i : i + 1])
            except OSError:
                closed = True
                break
            time.sleep(0.5)  # far below the 10 s deadline each time
            if time.monotonic() - started > 40:
                break
        if not closed:
            sock.settimeout(30)
            assert sock.recv(1) == b""
    assert time.monotonic() - started < 40
    assert "no hello within 10s" in one_location.output()


@pytest.mark.slow
def test_a_stopped_manager_does_not_blame_its_locations_for_missed_heartbeats(
    one_location: WsmUp,
) -> None:
    up = one_location
    before = up.location("repo")
    # The manager runs for moments between stalls longer than a heartbeat period, as when
    # several large frames arrive in a row: each stall outlasts the ping sent before it.
    for _ in range(8):
        os.kill(up.proc.pid, signal.SIGSTOP)
        time.sleep(1.5)
        os.kill(up.proc.pid, signal.SIGCONT)
        time.sleep(0.02)
    time.sleep(2)  # let the manager act on what it saw
    after = up.location("repo")
    assert (after["state"], after["pid"]) == ("ready", before["pid"])
    assert "missed" not in up.output()


# -- a hostile remote ----------------------------------------------------------------------


class HostileRemote:
    """A TCP server that completes the hello, then answers the next request with `answer`."""

    def __init__(self, answer: Callable[[int], bytes], hello_answer: Optional[bytes] = None):
        self.answer = answer
        self.hello_answer = hello_answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.served = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            conn.settimeout(60)
            try:
                while not self._stop:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                    while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                        n = struct.unpack(">I", buf[:4])[0]
                        msg = msgpack.unpackb(buf[4 : 4 + n], raw=False)
                        buf = buf[4 + n :]
                        if msg[2] == "hello":
                            reply = self.hello_answer or _frame(
                                [1, msg[1], None, {"protocol": 1, "server": "hostile"}]
                            )
                        else:
                            self.served += 1
                            reply = self.answer(msg[1])
                        conn.sendall(reply)
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        self.listener.close()
        self._thread.join(5)


def _frame(obj: object) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def slow_to_decode_answer(megabytes: int) -> Callable[[int], bytes]:
    """An answer of `megabytes` MiB that is slow to decode: millions of objects, and a
    timestamp marker that sent it to the strict pure-Python decoder before."""

    def answer(msg_id: int) -> bytes:
        junk = [None] * (megabytes * 1024 * 1024 - 64) + [b"\xd6\xff"]
        return _frame([1, msg_id, None, {"repositories": junk}])

    return answer


def livez_while_a_remote_sends(ws: WorkspaceDir, remote: HostileRemote) -> List[object]:
    path = ws.workspace(
        {
            "load_from": [remote_entry("hostile", remote.port)],
            "supervision": {"startup_timeout_seconds": 120},
        }
    )
    with WsmUp(ws, "-w", str(path), env=manager_env(ws)) as up:
        assert up.port is not None
        probe = LivezProbe(up.port, timeout=3.0)
        try:
            wait_for(lambda: remote.served >= 1, 60, "the remote's answer")
            time.sleep(8)  # the answer is being read and decoded
        finally:
            answers = probe.stop()
        up.stop()
        up.assert_no_leftovers()
    return answers


@pytest.mark.slow
def test_a_hostile_remotes_huge_answer_does_not_stall_the_loop(ws: WorkspaceDir) -> None:
    remote = HostileRemote(slow_to_decode_answer(24))
    try:
        answers = livez_while_a_remote_sends(ws, remote)
    finally:
        remote.close()
    assert answers and set(answers) == {200}, [a for a in answers if a != 200]


@pytest.mark.slow
def test_a_hostile_remotes_60_mib_answer_does_not_stall_the_loop(ws: WorkspaceDir) -> None:
    remote = HostileRemote(slow_to_decode_answer(60))
    try:
        answers = livez_while_a_remote_sends(ws, remote)
    finally:
        remote.close()
    assert answers and set(answers) == {200}, [a for a in answers if a != 200]


def test_a_remotes_hello_answer_beyond_64_kib_is_refused(ws: WorkspaceDir) -> None:
    big_hello = _frame([1, 1, None, {"protocol": 1, "server": "x" * (1 << 20)}])
    remote = HostileRemote(lambda msg_id: b"", hello_answer=big_hello)
    try:
        path = ws.workspace({"load_from": [remote_entry("hostile", remote.port)]})
        with WsmUp(ws, "-w", str(path), env=manager_env(ws)) as up:
            wait_for(lambda: "exceeds the limit of 65536" in json.dumps(up.status()), 60)
            up.stop()
            up.assert_no_leftovers()
    finally:
        remote.close()


# -- the manager's own stalls ----------------------------------------------------------------


def _ping_server(sock: socket.socket) -> None:
    """Answer hello and every ping at once, from a thread: a location that is perfectly fine."""
    buf = b""
    with sock:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = struct.unpack(">I", buf[:4])[0]
                msg = msgpack.unpackb(buf[4 : 4 + n], raw=False)
                buf = buf[4 + n :]
                try:
                    sock.sendall(_frame([1, msg[1], None, {"protocol": 1, "pid": 1}]))
                except OSError:
                    return


def _ping_across_a_stall(wait: Callable) -> object:
    """Ping a healthy peer over a real Unix socket while the loop stalls 1.5 s; the outcome
    of a 0.5 s heartbeat deadline applied by `wait`."""
    import asyncio

    from workspace_manager.supervisor import looplag
    from workspace_manager.supervisor.rpc import AsyncConnection

    async def main() -> object:
        probe = looplag.LoopLag().start()
        ours, theirs = socket.socketpair()
        threading.Thread(target=_ping_server, args=(theirs,), daemon=True).start()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        conn = AsyncConnection(reader, writer)
        try:
            await asyncio.sleep(0.2)  # the probe is running
            call = asyncio.ensure_future(wait(conn))
            await asyncio.sleep(0)  # the ping is sent
            time.sleep(1.5)  # the manager's loop is busy elsewhere; the answer arrives
            try:
                return await call
            except Exception as exc:
                return exc
        finally:
            conn.close()
            probe.stop()

    return asyncio.run(main())


@pytest.mark.slow
def test_a_stall_of_the_managers_loop_is_not_a_missed_heartbeat() -> None:
    from workspace_manager.protocol.errors import CallTimeout
    from workspace_manager.supervisor import looplag

    def heartbeat(conn):  # as Location._heartbeats pings
        return looplag.wait_allowing_for_lag(conn.request("ping"), 0.5)

    def call_heartbeat(conn):  # a whole call (a task) bounded the same way
        return looplag.wait_allowing_for_lag(conn.call("ping", {}, timeout=3600.0), 0.5)

    assert _ping_across_a_stall(heartbeat) == {"protocol": 1, "pid": 1}
    assert _ping_across_a_stall(call_heartbeat) == {"protocol": 1, "pid": 1}
    # a plain deadline, as before, blamed the peer for our stall
    outcome = _ping_across_a_stall(lambda conn: conn.call("ping", {}, timeout=0.5))
    assert isinstance(outcome, CallTimeout)

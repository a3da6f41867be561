"""A loader flooded with connections that never finish their hello (what `wsm serve` exposes to
the network): a bounded number of threads, and the manager still gets in. Real loader process,
real TCP sockets."""

from __future__ import annotations

import socket
import threading
import time
from typing import List

import pytest
from loader_process_test import repo, rundir, spawn  # noqa: F401  (fixtures)

from workspace_manager.loader.server import MAX_PENDING

HELLO_START = b"\x00\x00\x00\x40\x94\x00\x00\xa5hello"  # the first bytes of a hello frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line")


class Dribblers:
    """`count` TCP connections each sending one byte of a hello every `period` seconds, and
    reconnecting when dropped, as an attacker would."""

    def __init__(self, port: int, count: int, period: float) -> None:
        self.port = port
        self.period = period
        self.sockets: List[socket.socket] = [self._open() for _ in range(count)]
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setblocking(False)
        return sock

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self.period):
            byte = HELLO_START[i % len(HELLO_START) : i % len(HELLO_START) + 1]
            i += 1
            for n, sock in enumerate(self.sockets):
                try:
                    sock.send(byte)
                    continue
                except OSError:
                    self.dropped += 1
                sock.close()
                try:
                    self.sockets[n] = self._open()
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock in self.sockets:
            sock.close()


def flood(spawn, count: int, seconds: float) -> None:  # noqa: F811
    port = free_port()
    loader = spawn(listen=f"tcp://127.0.0.1:{port}")
    idle_threads = threads_of(loader.pid)
    attack = Dribblers(port, count, period=0.5)
    try:
        most = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            most = max(most, threads_of(loader.pid))
            with loader.client(timeout=30) as client:  # the manager still gets in
                assert client.call("ping") == {"pid": loader.pid}, loader.stderr_text()[-2000:]
            time.sleep(0.2)
    finally:
        attack.close()
    # those waiting for a hello, as many evicted ones still exiting, one for our client
    assert most - idle_threads <= 2 * MAX_PENDING + 4, (most, idle_threads)
    assert attack.dropped > 0
    assert "waiting for a hello; closing the oldest" in loader.stderr_text()


@pytest.mark.slow
def test_a_loader_under_200_byte_dribbling_connections_stays_small_and_lets_us_in(
    spawn,  # noqa: F811
):
    flood(spawn, 200, seconds=4)


@pytest.mark.slow
def test_a_loader_under_1000_byte_dribbling_connections_stays_small_and_lets_us_in(
    spawn,  # noqa: F811
):
    flood(spawn, 1000, seconds=15)


def test_the_hello_deadline_counts_from_the_accept_not_the_last_byte(spawn):  # noqa: F811
    loader = spawn(extra_bootstrap={"hello_timeout_seconds": 1.0})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(loader.address[5:])
        started = time.monotonic()
        try:
            for byte in HELLO_START * 10:  # one byte every 0.3 s: 30 s if each reset it
                sock.sendall(bytes([byte]))
                time.sleep(0.3)
        except OSError:
            pass
        sock.settimeout(30)
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 20
    assert "no hello within 1s" in loader.stderr_text()

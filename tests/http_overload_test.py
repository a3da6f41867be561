"""`/livez` answers whatever other clients do: slow ones, idle ones, many at once.

Real sockets against a real HealthServer (tests/http_server_test.py's Harness); the assertions
are on HTTP behaviour only, so they hold for any server that replaces this one.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import List

import pytest
from http_server_test import DEADLINE, Harness, Views, read_until_closed


class Slowloris:
    """`count` connections that each send one byte of a request head per `period` seconds."""

    HEAD = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096

    def __init__(self, port: int, count: int, period: float = 1.0) -> None:
        self.port = port
        self.period = period
        self.sockets: List[socket.socket] = []
        self.sent = 0
        self._stop = threading.Event()
        for _ in range(count):
            self._open()
        self._thread = threading.Thread(target=self._dribble, daemon=True)
        self._thread.start()

    def _open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        sock.setblocking(False)
        self.sockets.append(sock)

    def _dribble(self) -> None:
        offset = 0
        while not self._stop.wait(self.period):
            byte = self.HEAD[offset % len(self.HEAD) : offset % len(self.HEAD) + 1]
            offset += 1
            for i, sock in enumerate(self.sockets):
                try:
                    sock.send(byte)
                    self.sent += 1
                except OSError:  # dropped by the server: come back, as an attacker would
                    sock.close()
                    try:
                        fresh = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                        fresh.setblocking(False)
                        self.sockets[i] = fresh
                    except OSError:
                        pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)
        for sock in self.sockets:
            sock.close()


async def _one_request(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await reader.read()
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else -1
    except OSError:
        return -2
    finally:
        writer.close()


def concurrent_livez(port: int, count: int) -> List[int]:
    """`count` /livez requests opened at once from one client event loop; their statuses."""

    async def main() -> List[int]:
        return list(
            await asyncio.wait_for(asyncio.gather(*(_one_request(port) for _ in range(count))), 120)
        )

    return asyncio.run(main())


def livez_under_slowloris(views: Views, count: int, probes: int, **server) -> None:
    h = Harness(views, **server)
    attack = Slowloris(h.port, count)
    try:
        for _ in range(probes):
            assert h.get("/livez")[::2] == (200, "ok")
            time.sleep(0.2)
        assert attack.sent > 0
    finally:
        attack.close()
        h.close()


def test_livez_answers_during_a_slowloris_beyond_the_connection_limit():
    # 200 dribbling connections against 64 slots (scaled down from the default 1024)
    livez_under_slowloris(Views(), 200, probes=10, max_connections=64)


@pytest.mark.slow
def test_livez_answers_during_a_slowloris_of_1200_with_default_limits():
    livez_under_slowloris(Views(), 1200, probes=30)


def test_livez_answers_300_concurrent_requests_beyond_the_connection_limit():
    h = Harness(Views(), max_connections=64)
    try:
        assert concurrent_livez(h.port, 300) == [200] * 300
    finally:
        h.close()


@pytest.mark.slow
def test_livez_answers_1000_concurrent_requests_with_default_limits():
    h = Harness(Views())
    attack = Slowloris(h.port, 200)
    try:
        assert concurrent_livez(h.port, 1000) == [200] * 1000
    finally:
        attack.close()
        h.close()


def test_the_request_head_deadline_is_not_reset_by_each_byte():
    h = Harness(Views(), request_timeout=1.0)
    try:
        with h.raw() as sock:
            started = time.monotonic()
            try:
                for byte in b"GET /livez HTTP/1.1\r\nHost: x\r\n" * 10:
                    sock.send(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                pass  # dropped while still sending: the point
            assert read_until_closed(sock) == b""
            assert time.monotonic() - started < DEADLINE
    finally:
        h.close()


def test_the_longest_waiting_connection_is_dropped_for_a_new_one():
    h = Harness(Views(), max_connections=3)
    try:
        oldest = h.raw(b"GET /livez HTTP/1.1\r\n")
        time.sleep(0.6)
        others = [h.raw(b"GET /livez HTTP/1.1\r\n") for _ in range(2)]
        time.sleep(0.6)  # the oldest has now waited over a second, the others not
        assert h.get("/livez")[::2] == (200, "ok")
        assert read_until_closed(oldest) == b""
        for sock in others:  # newer ones were kept: finishing their head gets an answer
            sock.sendall(b"Connection: close\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 200 ")
            sock.close()
        oldest.close()
    finally:
        h.close()

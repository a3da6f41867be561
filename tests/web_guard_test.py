"""What web/guard.py adds around uvicorn, over real sockets against the real web server:
a write deadline for clients that read nothing, bounded bodies, and busy connections kept
apart from eviction. (The head deadline, head limits and eviction of waiting connections are
in tests/http_server_test.py and tests/http_overload_test.py.)"""

from __future__ import annotations

import socket
import time
from typing import Tuple

from http_server_test import DEADLINE, Harness, Views, read_until_closed

BIG = 64 << 20  # far more than the loopback socket buffers hold


def test_a_client_that_reads_nothing_is_dropped_after_the_write_deadline():
    async def exposition(accept: str) -> Tuple[bytes, str]:
        return b"x" * BIG, "text/plain"

    h = Harness(Views(), write_timeout=0.5, context={"exposition": exposition})
    try:
        with h.raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
            time.sleep(2.0)  # the server's writes pause, then its deadline passes
            assert len(read_until_closed(sock)) < BIG  # cut off, not delivered whole
        assert h.get("/livez")[::2] == (200, "ok")
        deadline = time.monotonic() + DEADLINE  # the probe's own close may still be on its way
        while len(h.server.guard) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(h.server.guard) == 0  # nothing left of it in the slots
    finally:
        h.close()


def test_a_reader_that_keeps_up_gets_the_whole_large_answer():
    async def exposition(accept: str) -> Tuple[bytes, str]:
        return b"x" * (8 << 20), "text/plain"

    h = Harness(Views(), write_timeout=0.5, context={"exposition": exposition})
    try:
        status, _, body = h.get("/metrics")
        assert status == 200 and len(body) == 8 << 20
    finally:
        h.close()


def test_a_chunked_body_beyond_the_limit_ends_the_connection():
    h = Harness(Views())
    try:
        with h.raw(
            b"POST /api/runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        ) as sock:
            chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
            try:
                for _ in range(40):  # 2.5 MiB, over the 1 MiB any endpoint may get
                    sock.sendall(chunk)
            except OSError:
                pass  # refused while still sending: the point
            data = read_until_closed(sock)
        assert data == b"" or data.startswith(b"HTTP/1.1 413 "), data[:80]
        assert h.get("/livez")[::2] == (200, "ok")
    finally:
        h.close()


def test_a_declared_body_beyond_the_limit_is_413_before_any_endpoint_runs():
    h = Harness(Views())
    try:
        head = b"POST /livez HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 << 20)
        with h.raw(head) as sock:
            assert read_until_closed(sock).startswith(b"HTTP/1.1 413 ")
    finally:
        h.close()


def test_busy_connections_are_never_evicted():
    """A connection whose request is in progress (here: a slow /metrics) holds its slot:
    with every slot busy, a newcomer is served beyond `max_connections` (up to the hard
    limit, half the open-file limit) and nobody's answer is cut."""
    import asyncio

    release = asyncio.Event()

    async def exposition(accept: str) -> Tuple[bytes, str]:
        await release.wait()
        return b"done\n", "text/plain"

    h = Harness(Views(), max_connections=2, context={"exposition": exposition})
    try:
        busy = [h.raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(2)]
        time.sleep(0.3)
        assert len(h.server.guard.busy) == 2
        with socket.create_connection(("127.0.0.1", h.port), timeout=DEADLINE) as sock:
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200 ")
        h.loop.call_soon_threadsafe(release.set)
        for sock in busy:
            sock.settimeout(DEADLINE)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            sock.close()
    finally:
        h.close()
